"""The training loop shared by every stage: phases → epochs → optimizer steps.

Resumable to the step: batch order and all randomness are functions of (seed, phase, epoch, step,
rank), so the only state a checkpoint needs is the weights, the optimizer, the EMA and three
counters. Checkpoints are written by rank 0 at the end of every ``checkpoint_every`` epochs and when
the run is interrupted; the write is atomic (temp file + rename).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ubdiff_onnx import __version__
from ubdiff_onnx.checkpoints.format import Checkpoint
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.qat import COMPONENTS, begin_calibration, constrain_, end_calibration, float_state_dict, prepare_qat_, qat_state, quant_parameters
from ubdiff_onnx.training.config import PhaseConfig, config_key, is_distill, phases_of
from ubdiff_onnx.training.data import RunData, TensorDictDataset, epoch_batches, iterate, shard, stable_seed
from ubdiff_onnx.training.distributed import Dist
from ubdiff_onnx.training.ema import EMA
from ubdiff_onnx.training.interrupt import GracefulInterrupt, TrainingInterrupted
from ubdiff_onnx.training.metrics import MetricsLog
from ubdiff_onnx.models.unet1d import UNet1D
from ubdiff_onnx.runtime.schedule import halving_timesteps
from ubdiff_onnx.training.distill import DistillPhase, frozen_copy, student_record
from ubdiff_onnx.training.phases import DiffusionPhase, Phase, PhaseModule, freeze_except, phase, set_modes
from ubdiff_onnx.training.rundir import RunDir
from ubdiff_onnx.training.samples import sample_report, save_samples

LOG_EVERY = 50  # optimizer steps between per-step metric records


@dataclass
class TrainState:
    """Where a stage is: phase index, completed epochs and steps of the current epoch."""

    phase_index: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    """Optimizer steps so far in the current phase (seeds the per-step randomness)."""
    calibrated: bool = False
    optimizer: dict | None = None
    ema_updates: int = 0
    finished: dict = field(default_factory=dict)
    """Epochs trained by each phase that is done (for the record)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainState":
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class StageContext:
    run: RunDir
    data: RunData
    dist: Dist
    seed: int
    configs: dict[str, PhaseConfig]
    log: MetricsLog
    meta: dict[str, Any]
    interrupt: GracefulInterrupt
    progress: bool = True
    say: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))


def lr_at(cfg: PhaseConfig, epoch: int, k: int, steps: int) -> float:
    if cfg.lr_schedule == "cosine":
        progress = (epoch + k / max(steps, 1)) / cfg.epochs
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))
    return cfg.lr * cfg.lr_gamma ** (epoch // max(cfg.lr_step_epochs, 1))


def make_optimizer(cfg: PhaseConfig, model: nn.Module, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Weights with weight decay, quantizer scales without (decaying a scale shrinks the range)."""
    scale_ids = {id(p) for p in quant_parameters(model)}
    weights = [p for p in params if id(p) not in scale_ids]
    scales = [p for p in params if id(p) in scale_ids]
    groups = [{"params": weights, "weight_decay": cfg.weight_decay}]
    if scales:
        groups.append({"params": scales, "weight_decay": 0.0})
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas))


class _OutOfMemory(Exception):
    def __init__(self, weights_intact: bool) -> None:
        super().__init__("out of memory")
        self.weights_intact = weights_intact


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


class StageRunner:
    """Runs the phases of one stage on ``model`` from ``state`` and writes RUN_DIR/<stage>.pt."""

    def __init__(self, ctx: StageContext, stage: str, model: UBDiff, state: TrainState,
                 ema_weights: dict[str, torch.Tensor] | None, carry_ema: dict[str, torch.Tensor] | None,
                 history: list[dict[str, Any]] | None = None, teacher: dict[str, torch.Tensor] | None = None) -> None:
        self.ctx = ctx
        self.stage = stage
        self.model = model.to(ctx.dist.device)
        self.state = state
        self.resume_ema = ema_weights
        self.carry_ema = carry_ema
        self.ema: EMA | None = None
        self.history: list[dict[str, Any]] = list(history or [])
        self.val: dict[str, float] = {k: v for k, v in (self.history[-1] if self.history else {}).items() if k.startswith("val_")}
        self.samples: dict[str, float] = {}
        self.train_latents: torch.Tensor | None = None
        self.teacher_weights = teacher
        """Distillation: the current round's teacher U-Net, saved with every checkpoint until the
        stage completes, so a round resumes against the same teacher."""
        self.student: dict[str, Any] | None = None

    # -- entry -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.time()
        names = phases_of(self.stage, self.model.cfg.timesteps)
        while self.state.phase_index < len(names):
            name = names[self.state.phase_index]
            self._run_phase(phase(name), self.ctx.configs[config_key(name)])
            finished = {**self.state.finished, name: self.state.epoch}
            self.state = TrainState(phase_index=self.state.phase_index + 1, finished=finished)
            if self.state.phase_index < len(names):
                self._save(complete=False)
        last = phase(names[-1])
        if isinstance(last, DiffusionPhase) and self.train_latents is not None:
            cfg = self.ctx.configs[config_key(names[-1])]
            self._sample_check(cfg, last.check_steps(cfg))
        self._save(complete=True)
        seconds = round(time.time() - t0, 1)
        self.ctx.log.write(kind="stage_done", stage=self.stage, seconds=seconds, **self.val)
        return {"stage": self.stage, "val": self.val, "history": self.history, "samples": self.samples,
                "checkpoint": str(self.ctx.run.checkpoint(self.stage)), "seconds": seconds}

    # -- one phase -------------------------------------------------------------------------------
    def _run_phase(self, ph: Phase, cfg: PhaseConfig) -> None:
        ctx, d, model = self.ctx, self.ctx.dist, self.model
        if isinstance(ph, DistillPhase):
            self._begin_distill(ph)
        if ph.qat_components:
            prepare_qat_(model, ph.qat_components)
            model.to(d.device)
        params = freeze_except(model, ph.trainable)
        set_modes(model, ph.trainable, False)
        train_ds = ph.train_data(ctx.data, model, d.device)
        val_ds = ph.val_data(ctx.data, model, d.device)
        if isinstance(ph, DiffusionPhase):
            assert isinstance(train_ds, TensorDictDataset)
            self.train_latents = train_ds.tensors["x0"]
            ph.sample_steps = cfg.sample_steps
        if ph.qat_components and not self.state.calibrated:
            self._calibrate(ph, cfg, train_ds)
            self.state.calibrated = True
            self._validate(ph, cfg, val_ds, label="calibrated")
        opt = make_optimizer(cfg, model, params)
        if self.state.optimizer:
            opt.load_state_dict(self.state.optimizer)
        self.ema = None
        if ph.uses_ema and cfg.ema_decay:
            self.ema = EMA(model.unet, cfg.ema_decay, cfg.ema_every)
            if self.resume_ema is not None and self.state.step > 0:
                self.ema.load_state_dict({"shadow": self.resume_ema, "updates": self.state.ema_updates})
        module: nn.Module = PhaseModule(model, ph)
        if d.enabled:
            module = DistributedDataParallel(module, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        for epoch in range(self.state.epoch, cfg.epochs):
            self._train_epoch(ph, cfg, module, opt, params, train_ds, epoch)
            self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
            last = epoch + 1 == cfg.epochs
            if (epoch + 1) % cfg.val_every == 0 or last:
                self._validate(ph, cfg, val_ds)
            if (epoch + 1) % cfg.checkpoint_every == 0 or last:
                self.state.optimizer = opt.state_dict()
                self._save(complete=False)

    def _begin_distill(self, ph: DistillPhase) -> None:
        """Teacher and student of a round. Fresh: the previous round's EMA student (first round: the
        diffusion stage's EMA U-Net) becomes the teacher and initialises the student; the QAT phase
        keeps the last round's teacher and quantizes its EMA student, whose float weights are kept
        as the checkpoint's ``ema``. Resumed mid-phase: the teacher saved with the checkpoint."""
        model, st = self.model, self.state
        if st.step == 0 and not st.calibrated:
            if self.ema is not None:
                source = self.ema.shadow
            else:
                source = self.resume_ema or self.carry_ema or model.unet.state_dict()
            source = {k: v.detach().cpu().clone() for k, v in source.items()}
            self.ema = None  # the previous round's; this phase makes its own (or none, QAT)
            model.unet.load_state_dict(source, strict=True)
            if ph.qat_components:
                self.carry_ema = source
            else:
                self.teacher_weights = source
        if self.teacher_weights is None:
            raise UserError(f"{self.ctx.run.checkpoint(self.stage)}: no teacher weights saved with this distillation; "
                            f"train it again with --overwrite")
        ph.teacher = frozen_copy(UNet1D(model.cfg), self.teacher_weights).to(self.ctx.dist.device)
        T = model.cfg.timesteps
        self.student = student_record(ph.student_steps, T)
        self.ctx.say(f"{self.stage} [{ph.name}]: {'quantization-aware ' if ph.qat_components else ''}student for "
                     f"{ph.student_steps} DDIM steps {halving_timesteps(T, ph.student_steps)[:8]}"
                     f"{'…' if ph.student_steps > 8 else ''} from a {2 * ph.student_steps}-step teacher")

    def _calibrate(self, ph: Phase, cfg: PhaseConfig, train_ds) -> None:
        d, model = self.ctx.dist, self.model
        roots = [model.get_submodule(p) for c in ph.qat_components for p in COMPONENTS[c]]
        for r in roots:
            begin_calibration(r)
        seed = stable_seed(self.ctx.seed, ph.name, "calibration")
        batches = epoch_batches(len(train_ds), cfg.batch_size, seed, 0, max(1, cfg.calibration_batches))
        set_modes(model, ph.trainable, False)
        with torch.no_grad():
            for k, batch in enumerate(iterate(train_ds, [shard(b, d.rank, d.world) for b in batches], self.ctx.data.workers)):
                batch = {key: v.to(d.device) for key, v in batch.items()}
                gen = torch.Generator(d.device).manual_seed(stable_seed(seed, d.rank, k))
                ph.calibration_forward(model, batch, gen)
        for r in roots:
            end_calibration(r, reduce=lambda lo, hi: (d.min_(lo), d.max_(hi)))
        self.ctx.say(f"{self.stage} [{ph.name}]: observers calibrated on {len(batches)} batches; scales are now learnable (LSQ)")

    def _train_epoch(self, ph: Phase, cfg: PhaseConfig, module: nn.Module, opt: torch.optim.Optimizer,
                     params: list[nn.Parameter], train_ds, epoch: int) -> None:
        ctx, d, model, st = self.ctx, self.ctx.dist, self.model, self.state
        accum = cfg.grad_accum
        want = None if cfg.steps_per_epoch is None else cfg.steps_per_epoch * accum
        micro = epoch_batches(len(train_ds), cfg.batch_size, stable_seed(ctx.seed, ph.name), epoch, want,
                              getattr(train_ds, "epoch_size", None))
        steps = len(micro) // accum if cfg.step_cap is None else min(len(micro) // accum, cfg.step_cap)
        start = st.step_in_epoch
        if start >= steps:
            return
        it = iter(iterate(train_ds, [shard(b, d.rank, d.world) for b in micro[start * accum:steps * accum]], ctx.data.workers))
        set_modes(model, ph.trainable, True)
        bar = _progress(steps, start, f"{self.stage} [{ph.name}] {epoch + 1}/{cfg.epochs}", d.is_main and ctx.progress)
        total, count, t0 = 0.0, 0, time.time()
        try:
            for k in range(start, steps):
                lr = lr_at(cfg, epoch, k, steps)
                for g in opt.param_groups:
                    g["lr"] = lr
                try:
                    loss_value = self._step(ph, cfg, module, opt, params, it, accum)
                except _OutOfMemory as oom:
                    self._out_of_memory(cfg, opt, oom.weights_intact)
                bad = not math.isfinite(loss_value)
                st.step += 1
                st.step_in_epoch = k + 1
                if self.ema is not None:
                    self.ema.step(model.unet, st.step)
                    st.ema_updates = self.ema.updates
                stop, bad = self._flags(ctx.interrupt.requested, bad)
                if bad:
                    raise UserError(f"{self.stage} [{ph.name}]: the loss became NaN/inf at epoch {epoch + 1} step {k + 1} "
                                    f"(lr {lr:.2e}); nothing was saved from this epoch — lower --lr and resume with --resume")
                total, count = total + loss_value, count + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{lr:.1e}")
                if st.step % LOG_EVERY == 0:
                    ctx.log.write(kind="train_step", stage=self.stage, phase=ph.name, epoch=epoch + 1, step=st.step, loss=loss_value, lr=lr)
                if stop:
                    st.optimizer = opt.state_dict()
                    path = self._save(complete=False)
                    signum = ctx.interrupt.signum or 2
                    raise TrainingInterrupted(
                        f"interrupted during {self.stage} [{ph.name}] epoch {epoch + 1} step {k + 1}; checkpoint saved to {path}; "
                        f"continue with `ubdiff-onnx train {ctx.run.root} --resume`", signum)
        finally:
            if bar is not None:
                bar.close()
        secs = time.time() - t0
        if count:
            ctx.log.write(kind="train", stage=self.stage, phase=ph.name, epoch=epoch + 1, step=st.step, loss=total / count,
                          lr=lr, seconds=round(secs, 3))
            ctx.say(f"{self.stage} [{ph.name}] epoch {epoch + 1}/{cfg.epochs}: train loss {total / count:.4f} ({secs:.1f} s)")

    def _step(self, ph: Phase, cfg: PhaseConfig, module: nn.Module, opt: torch.optim.Optimizer,
              params: list[nn.Parameter], it, accum: int) -> float:
        d, st = self.ctx.dist, self.state
        opt.zero_grad(set_to_none=True)
        total = 0.0
        stepping = False
        try:
            for a in range(accum):
                batch = {key: v.to(d.device, non_blocking=True) for key, v in next(it).items()}
                gen = torch.Generator(d.device).manual_seed(stable_seed(self.ctx.seed, ph.name, "step", d.rank, st.step, a))
                inputs = ph.inputs(batch, self.model, gen)
                sync = module.no_sync() if isinstance(module, DistributedDataParallel) and a < accum - 1 else nullcontext()
                with sync:
                    loss, _ = module(inputs)
                    (loss / accum).backward()
                total += loss.item() / accum
            if not math.isfinite(total):
                return total
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            stepping = True
            opt.step()
        except BaseException as exc:
            if _is_oom(exc):
                raise _OutOfMemory(weights_intact=not stepping) from None
            raise
        if ph.qat_components:
            constrain_(self.model)
        return total

    def _out_of_memory(self, cfg: PhaseConfig, opt: torch.optim.Optimizer, weights_intact: bool) -> None:
        """Save the state after the last completed step (if the failed step did not touch the
        weights), then stop with the one-line advice."""
        path = self.ctx.run.checkpoint(self.stage)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if weights_intact:
            self.state.optimizer = opt.state_dict()
            self._save(complete=False)
            kept = f"progress up to the last step is saved in {path}"
        else:
            kept = f"the last checkpoint {path} is intact"
        raise UserError(f"out of memory at --batch-size {cfg.batch_size} on {self.ctx.dist.device}; {kept} — "
                        f"continue with a smaller --batch-size and --resume")

    def _flags(self, *flags: bool) -> list[bool]:
        """Interrupt / failure flags OR-ed over ranks, so every rank stops at the same step."""
        d = self.ctx.dist
        if not d.enabled:
            return list(flags)
        t = d.max_(torch.tensor([1.0 if f else 0.0 for f in flags], device=d.device))
        return [bool(v > 0) for v in t.tolist()]

    # -- validation, samples, checkpoints --------------------------------------------------------
    def _validate(self, ph: Phase, cfg: PhaseConfig, val_ds, label: str | None = None) -> dict[str, float]:
        ctx, model = self.ctx, self.model
        set_modes(model, ph.trainable, False)
        metrics = ph.validate(model, val_ds, ctx.dist, cfg.batch_size, ctx.seed, ctx.data.workers)
        if self.ema is not None:
            online = {k: v.detach().clone() for k, v in model.unet.state_dict().items()}
            self.ema.copy_to(model.unet)
            ema_metrics = ph.validate(model, val_ds, ctx.dist, cfg.batch_size, ctx.seed, ctx.data.workers)
            model.unet.load_state_dict(online)
            metrics = {**{f"{k}_online": v for k, v in metrics.items()}, **ema_metrics}
        record = {"kind": "val", "stage": self.stage, "phase": ph.name, "epoch": self.state.epoch, "step": self.state.step,
                  **({"label": label} if label else {}), **metrics}
        ctx.log.write(**record)
        self.history.append(record)
        self.val = metrics
        shown = ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items() if k.startswith("val_") and not k.endswith("_online"))
        ctx.say(f"{self.stage} [{ph.name}] {label or f'epoch {self.state.epoch}/{cfg.epochs}'} validation: {shown}")
        return metrics

    def _sample_check(self, cfg: PhaseConfig, steps: int) -> None:
        ctx, d, model = self.ctx, self.ctx.dist, self.model
        if d.is_main:
            model.eval()
            unet = model.unet
            if self.ema is not None:
                unet = copy.deepcopy(model.unet)
                self.ema.copy_to(unet)
                unet.eval()
            seed = stable_seed(ctx.seed, self.stage, "samples")
            self.samples, latents = sample_report(model, unet, self.train_latents, cfg.sample_count, steps, seed, d.device)
            path = save_samples(model, latents[:8], ctx.data.constants, ctx.run.samples, self.stage, d.device)
            ctx.log.write(kind="samples", stage=self.stage, steps=steps, path=str(path), **self.samples)
            s = self.samples
            ctx.say(f"{self.stage}: DDIM-{steps} samples, mean nearest-latent distance {s['sample_nn']:.3f} "
                    f"(data itself {s['data_nn']:.3f}, matched Gaussian {s['gauss_nn']:.3f}, N(0,1) noise {s['noise_nn']:.3f}); "
                    f"decoded samples in {path.parent}")
        d.barrier()

    def _save(self, complete: bool):
        ctx, d = self.ctx, self.ctx.dist
        path = ctx.run.checkpoint(self.stage)
        if d.is_main:
            ema = {k: v.detach().cpu().clone() for k, v in self.ema.shadow.items()} if self.ema is not None else self.carry_ema
            meta = {
                **ctx.meta,
                "stage": self.stage,
                "stage_complete": complete,
                "phases": {n: ctx.configs[config_key(n)].to_dict() for n in phases_of(self.stage, self.model.cfg.timesteps)},
                "val": self.val,
                "samples": self.samples,
                "history": self.history,
                "train_state": self.state.to_dict(),
                "ubdiff_onnx_version": __version__,
            }
            if is_distill(self.stage):
                meta["student"] = self.student
                if not complete:
                    meta["distill_teacher"] = self.teacher_weights
            ckpt = Checkpoint(self.model.cfg, float_state_dict(self.model), ema, qat_state(self.model), meta)
            ctx.run.save(self.stage, ckpt)
        d.barrier()
        return path


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=None, mininterval=0.5)
