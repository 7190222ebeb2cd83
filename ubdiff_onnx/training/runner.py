"""``train``: resolve the run's settings, check them against RUN_DIR, and run the stages in order.

Each stage starts from the previous stage's checkpoint in RUN_DIR (or ``--init``), so stages can be
run one by one or all at once; ``--resume`` continues the newest checkpoint of each stage and skips
completed ones. All checks that can fail do so before any training starts.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ubdiff_onnx.checkpoints.format import Checkpoint, load_checkpoint
from ubdiff_onnx.config import PRESETS, preset as preset_config
from ubdiff_onnx.data.openfwi import SplitConfig
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.qat import model_from_checkpoint
from ubdiff_onnx.runtime.normalization import NormConstants, resolve_constants
from ubdiff_onnx.training.config import (STAGES, Overrides, config_key, distill_stage, downstream, is_distill, phase_defaults,
                                         extra_velocity_default, phases_of, source_stage, split_defaults, stages_for,
                                         student_steps_of)
from ubdiff_onnx.training.data import extra_velocity_maps, open_run_data
from ubdiff_onnx.training.distributed import Dist, init_distributed, shutdown_distributed
from ubdiff_onnx.training.interrupt import GracefulInterrupt
from ubdiff_onnx.training.loop import StageContext, StageRunner, TrainState
from ubdiff_onnx.training.metrics import MetricsLog
from ubdiff_onnx.training.rundir import RunDir


@dataclass
class TrainOptions:
    run_dir: Path
    data: Path | None = None
    dataset: str | None = None
    preset: str | None = None
    stage: str = "all"
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    overrides: Overrides = field(default_factory=Overrides)
    init: Path | None = None
    val_fraction: float | None = None
    paired_fraction: float | None = None
    paired_count: int | None = None
    workers: int = 0
    threads: int = 0
    progress: bool = True
    student_steps: int | None = None
    """--stage distill: U-Net calls of the student (default 4)."""
    extra_velocity_maps: int | None = None
    """Extra generator velocity maps for the velocity-only stages (default: the preset's)."""


@dataclass
class RunSettings:
    """Everything fixed for the whole run (identical on every rank)."""

    preset: str
    dataset: str
    constants: NormConstants
    data: Path
    split: SplitConfig
    info: dict[str, Any]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _dataset_from_folder(data: Path) -> str | None:
    """The family recorded by ``data synth`` (so synthetic folders need no --dataset)."""
    try:
        from ubdiff_onnx.data.synth import read_metadata

        meta = read_metadata(data)
    except Exception:
        return None
    fam = (meta or {}).get("family")
    return fam if isinstance(fam, str) else None


def _resolve(opts: TrainOptions, run: RunDir, say: Callable[[str], None]) -> RunSettings:
    info = run.read_info() or {}
    for key, given in (("preset", opts.preset), ("dataset", opts.dataset)):
        if given is not None and info.get(key) not in (None, given):
            raise UserError(f"{run.info_path}: this run uses --{key} {info[key]}, not {given}; use a new RUN_DIR for a different {key}")
    preset = opts.preset or info.get("preset") or "tiny"

    if opts.data is not None:
        data = Path(opts.data).expanduser().resolve()
        if info.get("data") and Path(info["data"]) != data:
            raise UserError(f"{run.info_path}: this run trains on {info['data']}, not {data}; use a new RUN_DIR for other data")
    elif info.get("data"):
        data = Path(info["data"])
        if not data.exists():
            raise UserError(f"{data}: the run's data folder is gone; pass --data with its new location")
    else:
        from ubdiff_onnx.data.embedded import embedded_dataset

        say("using the embedded curvefault-a dataset (generated on first use, about a minute)")
        data = embedded_dataset()
    dataset = opts.dataset or info.get("dataset") or _dataset_from_folder(data)
    if dataset is None:
        raise UserError(f"--dataset is required for {data}: an OpenFWI name (e.g. curvefault-a) or a constants .json")
    constants = resolve_constants(dataset)

    if info.get("split"):
        split = SplitConfig(**info["split"])
        asked = {"val_fraction": opts.val_fraction, "paired_fraction": opts.paired_fraction, "paired_count": opts.paired_count}
        for key, value in asked.items():
            if value is not None and value != getattr(split, key):
                raise UserError(f"--{key.replace('_', '-')} {value}: this run's split is fixed at {getattr(split, key)} (see {run.info_path})")
    else:
        base = split_defaults(preset, opts.seed)
        split = SplitConfig(
            val_fraction=base.val_fraction if opts.val_fraction is None else opts.val_fraction,
            paired_fraction=base.paired_fraction if opts.paired_fraction is None else opts.paired_fraction,
            paired_count=opts.paired_count,
            seed=opts.seed,
        )
    extra = _extra_velocity(opts, info, preset, data, run)
    info = {**info, "preset": preset, "dataset": dataset, "constants": constants.to_dict(), "data": str(data),
            "split": asdict(split), "extra_velocity": extra, "stages": info.get("stages", {})}
    return RunSettings(preset, dataset, constants, data, split, info)


def _synth_family(data: Path) -> str | None:
    """The generator family of a folder ``data synth`` made (only those: a folder that ``sample
    --layout openfwi`` wrote names a dataset, not our generator)."""
    import json

    from ubdiff_onnx.data.synth import METADATA

    try:
        fam = json.loads((data / METADATA).read_text()).get("family")
    except (OSError, ValueError, AttributeError):
        return None
    from ubdiff_onnx.data.velocity_models import FAMILIES

    return fam if fam in FAMILIES else None


def _extra_velocity(opts: TrainOptions, info: dict[str, Any], preset: str, data: Path, run: RunDir) -> dict[str, Any]:
    """The run's extra generator maps: fixed once recorded, like the split (a resume sees the same)."""
    if "extra_velocity" in info:
        recorded = info["extra_velocity"]
        if opts.extra_velocity_maps is not None and opts.extra_velocity_maps != recorded["count"]:
            raise UserError(f"--extra-velocity-maps {opts.extra_velocity_maps}: this run's is fixed at {recorded['count']} "
                            f"(see {run.info_path})")
        return recorded
    count = extra_velocity_default(preset) if opts.extra_velocity_maps is None else opts.extra_velocity_maps
    if count < 0:
        raise UserError(f"--extra-velocity-maps must be >= 0, got {count}")
    family = _synth_family(data)
    if count and family is None:
        if opts.extra_velocity_maps is None:
            count = 0  # a downloaded OpenFWI folder: no generator to draw from, the preset trains on the folder alone
        else:
            raise UserError(f"--extra-velocity-maps: {data} was not made by `data synth` (no family in its metadata); "
                            "extra maps come from the generator of the folder's own family")
    return {"count": count, "family": family if count else None, "seed": opts.seed}


def _check_source(ckpt: Checkpoint, path: Path, preset: str, dataset: str, what: str) -> None:
    if ckpt.config.preset in PRESETS and ckpt.config.preset != preset:
        raise UserError(f"{path}: {what} was trained with preset {ckpt.config.preset!r}, but this run uses --preset {preset}")
    if ckpt.config.preset not in PRESETS and ckpt.config.preset != "custom":
        raise UserError(f"{path}: unknown preset {ckpt.config.preset!r} in the checkpoint")
    trained_on = ckpt.meta.get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise UserError(f"{path}: {what} was trained on {trained_on}, but this run uses --dataset {dataset}")


def _start(stage: str, first: bool, opts: TrainOptions, settings: RunSettings, run: RunDir, seed: int):
    """Model, EMA weights to carry, for a stage that starts fresh."""
    if first and opts.init is not None:
        path = Path(opts.init)
        ckpt = load_checkpoint(path)
        _check_source(ckpt, path, settings.preset, settings.dataset, "--init")
    elif stage == STAGES[0]:
        torch.manual_seed(seed)
        return UBDiff(preset_config(settings.preset)), None
    else:
        prev = source_stage(stage)
        path = run.checkpoint(prev)
        if not path.exists():
            shown = "distill" if is_distill(stage) else stage
            raise UserError(f"{path} not found: --stage {shown} starts from the {prev} stage's checkpoint; "
                            f"run --stage {prev} first (or --stage all, or pass --init CHECKPOINT)")
        ckpt = load_checkpoint(path)
        _check_source(ckpt, path, settings.preset, settings.dataset, f"the {prev} stage")
        if not ckpt.meta.get("stage_complete", False):
            raise UserError(f"{path}: the {prev} stage did not finish; complete it with `--stage {prev} --resume`")
    if is_distill(stage) and ckpt.qat and "unet" in ckpt.qat.get("components", ()):
        raise UserError(f"{path}: its U-Net is quantization-aware; a distillation needs the float teacher "
                        f"(start from the {source_stage(stage)} stage's checkpoint)")
    model = model_from_checkpoint(ckpt, source=str(path))
    if is_distill(stage):
        distill_stage(student_steps_of(stage), model.cfg.timesteps)  # T must halve down to the student
    carry = ckpt.ema
    if stage == "qat-diffusion" and ckpt.ema:
        model.unet.load_state_dict(ckpt.ema, strict=True)  # quantize the EMA weights, the ones sampled with
        carry = None
    return model, carry


def train(opts: TrainOptions, say: Callable[[str], None] = _stderr) -> list[dict[str, Any]]:
    """Run the requested stage(s); returns one summary dict per stage that ran or was skipped."""
    stages = stages_for(opts.stage, opts.student_steps)
    if opts.preset is not None and opts.preset not in PRESETS:
        raise UserError(f"--preset: unknown preset {opts.preset!r}; expected one of {', '.join(PRESETS)}")
    if opts.overwrite and opts.resume:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    threads_before = torch.get_num_threads()
    d = init_distributed(opts.device, opts.threads)
    try:
        return _train(opts, stages, d, say if d.is_main else (lambda msg: None))
    finally:
        shutdown_distributed(d)
        torch.set_num_threads(threads_before)  # callers (tests, notebooks) keep their setting


def _train(opts: TrainOptions, stages: tuple[str, ...], d: Dist, say: Callable[[str], None]) -> list[dict[str, Any]]:
    run = RunDir(opts.run_dir)
    settings = None
    error = None
    if d.is_main:
        try:
            run.create()
            settings = _resolve(opts, run, say)
        except UserError as exc:
            error = str(exc)
    error = d.broadcast_object(error)
    if error is not None:
        raise UserError(error)
    settings = d.broadcast_object(settings)
    d.barrier()
    if d.is_main:
        with run.lock():
            run.remove_stale_temporaries()
            run.write_info(settings.info)
            return _run_stages(opts, stages, d, run, settings, say)
    return _run_stages(opts, stages, d, run, settings, say)


def _run_stages(opts, stages, d: Dist, run: RunDir, settings: RunSettings, say) -> list[dict[str, Any]]:
    data = open_run_data(settings.data, settings.constants, settings.split, opts.workers)
    extra = settings.info.get("extra_velocity") or {}
    if extra.get("count"):
        say(f"adding {extra['count']} {extra['family']} generator maps to the velocity-only stages (--extra-velocity-maps)")
        data.extra_velocity = extra_velocity_maps(extra["family"], extra["count"], extra["seed"], settings.constants)
    if len(data.split.val) < d.world:
        raise UserError(f"{settings.data}: {len(data.split.val)} validation samples for {d.world} processes; use more data")
    defaults = phase_defaults(settings.preset)
    configs = {name: opts.overrides.apply(cfg) for name, cfg in defaults.items()}
    meta = {"dataset": settings.dataset, "constants": settings.constants.to_dict(), "preset": settings.preset,
            "data": str(settings.data), "split": asdict(settings.split), "seed": opts.seed, "world_size": d.world}
    log = MetricsLog(run.metrics, enabled=d.is_main)
    plan = _plan(opts, stages, run, settings)  # every check before the first step
    if opts.overwrite and d.is_main:  # stale checkpoints of the stages being retrained must not be resumed later
        for stage in stages:
            run.checkpoint(stage).unlink(missing_ok=True)
    d.barrier()
    results = []
    with GracefulInterrupt(say) as interrupt:
        ctx = StageContext(run, data, d, opts.seed, configs, log, meta, interrupt, opts.progress, say)
        for i, (stage, resume_ckpt) in enumerate(plan):
            if resume_ckpt is not None and resume_ckpt.meta.get("stage_complete"):
                say(f"{stage}: already complete in {run.checkpoint(stage)} (use --overwrite to train it again)")
                results.append({"stage": stage, "skipped": True, "val": resume_ckpt.meta.get("val", {}),
                                "history": resume_ckpt.meta.get("history", []), "samples": resume_ckpt.meta.get("samples", {})})
                continue
            if resume_ckpt is not None:
                model = model_from_checkpoint(resume_ckpt, source=str(run.checkpoint(stage)))
                state = TrainState.from_dict(resume_ckpt.meta.get("train_state"))
                own_ema = resume_ckpt.ema if stage == "diffusion" or is_distill(stage) else None
                carry = None if stage in ("diffusion", "qat-diffusion") else resume_ckpt.ema
                history = resume_ckpt.meta.get("history", [])
                teacher = resume_ckpt.meta.get("distill_teacher")
                names = phases_of(stage)
                say(f"{stage}: resuming from {run.checkpoint(stage)} (phase {names[min(state.phase_index, len(names) - 1)]}, "
                    f"epoch {state.epoch + 1}, step {state.step_in_epoch})")
                log.write(kind="resume", stage=stage, **{k: v for k, v in state.to_dict().items() if k != "optimizer"})
            else:
                model, carry = _start(stage, i == 0, opts, settings, run, opts.seed)
                state, own_ema, history, teacher = TrainState(), None, [], None
                log.write(kind="start", stage=stage, preset=settings.preset, dataset=settings.dataset, seed=opts.seed,
                          phases={n: configs[config_key(n)].to_dict() for n in phases_of(stage)})
            _mark(run, settings, stage, "running", d)
            result = StageRunner(ctx, stage, model, state, own_ema, carry, history, teacher).run()
            _mark(run, settings, stage, "complete", d, result.get("val"))
            results.append(result)
    return results


def _plan(opts: TrainOptions, stages, run: RunDir, settings: RunSettings) -> list[tuple[str, Checkpoint | None]]:
    """(stage, checkpoint to resume or None) for each stage, refusing to clobber finished work."""
    plan = []
    for stage in stages:
        path = run.checkpoint(stage)
        if not path.exists() or opts.overwrite:
            plan.append((stage, None))
            continue
        if not opts.resume:
            raise UserError(f"{path} exists: pass --resume to continue the run, or --overwrite to train {stage} again")
        ckpt = load_checkpoint(path)
        _check_source(ckpt, path, settings.preset, settings.dataset, f"the {stage} checkpoint")
        if ckpt.meta.get("stage_complete"):  # only its record is needed: free the weights (GBs for paper)
            ckpt = replace(ckpt, state_dict={}, ema=None, qat=None)
        plan.append((stage, ckpt))
    if opts.overwrite:
        existing = [p.stem for p in sorted(run.root.glob("*.pt")) if p.stem in STAGES or is_distill(p.stem)]
        later = downstream(stages[-1], existing)
        if later:
            raise UserError(f"--overwrite of {stages[-1]} would leave later stages ({', '.join(later)}) built on the old "
                            f"weights; delete {run.checkpoint(later[0])} (and after) first, or use a new RUN_DIR")
    return plan


def _mark(run: RunDir, settings: RunSettings, stage: str, status: str, d: Dist, val: dict | None = None) -> None:
    if not d.is_main:
        return
    entry = {"status": status, "checkpoint": run.checkpoint(stage).name}
    if val:
        entry["val"] = val
    settings.info["stages"][stage] = entry
    run.write_info(settings.info)
