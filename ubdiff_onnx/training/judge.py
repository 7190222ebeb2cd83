"""``inversion train``: train the judge (InversionNet + velocity feature network) on real pairs.

OpenFWI's recipe: inputs normalised as OpenFWI does (seismic sign·log1p then min-max to [-1, 1],
velocity min-max to [-1, 1]), loss ℓ1 + ℓ2, AdamW (lr 1e-4, weight decay 1e-4). The velocity
feature network (an auto-encoder of the same real maps; its bottleneck is the velocity Fréchet
feature space) trains on the same batches with its own AdamW.

The folder::

    OUT/judge.pt        both networks, constants, shapes, mean training map, data fingerprints, and
                        (while training) the optimizer state; rewritten atomically every epoch and
                        on Ctrl-C / SIGTERM, so ``--resume`` continues exactly where it stopped
    OUT/judge.json      summary: config, data, validation metrics next to the mean-map baseline
    OUT/metrics.jsonl   one record per validation
    OUT/val.png         validation maps: true, inverted, mean-map baseline (same colour scale)

Batches are a pure function of (seed, epoch) and a resumed run skips the steps it already took, so
an interrupted-and-resumed run sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ubdiff_onnx.data.openfwi import SEISMIC_SAMPLE_SHAPE, VELOCITY_SAMPLE_SHAPE, OpenFWIFolder, open_folder
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.evaluation.judge import JUDGE_FILE, JUDGE_FORMAT, JUDGE_VERSION, data_fingerprint, inversion_metrics, pool_metrics
from ubdiff_onnx.models.inversionnet import InversionNet, JudgeConfig, VelocityFeatureNet
from ubdiff_onnx.runtime.atomic import atomic_open, atomic_write_text
from ubdiff_onnx.runtime.normalization import NormConstants, normalize_seismic, normalize_velocity, resolve_constants
from ubdiff_onnx.training.data import epoch_batches, stable_seed
from ubdiff_onnx.training.interrupt import GracefulInterrupt, TrainingInterrupted
from ubdiff_onnx.training.metrics import MetricsLog

CACHE_LIMIT_BYTES = 6 << 30  # decimated, normalised seismic held in memory up to this size; streamed beyond


@dataclass
class JudgeTrainOptions:
    data: list[Path]
    out: Path
    dataset: Optional[str] = None
    config: JudgeConfig = field(default_factory=JudgeConfig)
    epochs: int = 10
    max_steps: Optional[int] = None       # total optimizer steps (wins over epochs when smaller)
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    feature_lr: float = 1e-3
    lr_schedule: str = "cosine"           # constant | cosine (5 % linear warm-up, then cosine to 0 at the last step)
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 0
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


# ---------------------------------------------------------------------------------------------
# data


class PairPool:
    """Samples of several OpenFWI folders as one index space, normalised (and decimated) on read;
    held in memory when they fit ``CACHE_LIMIT_BYTES``."""

    def __init__(self, folders: list[OpenFWIFolder], constants: NormConstants, decimation: int) -> None:
        self.folders = folders
        self.constants = constants
        self.d = decimation
        self.offsets = np.cumsum([0] + [len(f) for f in folders])
        self.n = int(self.offsets[-1])
        self._seis: Optional[np.ndarray] = None
        self._vel: Optional[np.ndarray] = None

    def _locate(self, i: int) -> tuple[OpenFWIFolder, int]:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.folders[k], int(i - self.offsets[k])

    def seismic_bytes(self) -> int:
        return self.n * 4 * 5 * math.ceil(1000 / self.d) * 70

    def load(self, say: Callable[[str], None]) -> None:
        self._vel = np.stack([self._read_velocity(i) for i in range(self.n)])
        if self.seismic_bytes() <= CACHE_LIMIT_BYTES:
            self._seis = np.empty((self.n, 5, math.ceil(1000 / self.d), 70), np.float32)
            for i in range(self.n):
                self._seis[i] = self._read_seismic(i)
        else:
            say(f"{self.seismic_bytes() / 2**30:.1f} GiB of seismic data: streamed from the files, not held in memory")

    def _read_seismic(self, i: int) -> np.ndarray:
        f, j = self._locate(i)
        return normalize_seismic(np.ascontiguousarray(f.seismic(j)[:, :: self.d, :]), self.constants)

    def _read_velocity(self, i: int) -> np.ndarray:
        f, j = self._locate(i)
        return normalize_velocity(f.velocity(j), self.constants)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        seis = self._seis[idx] if self._seis is not None else np.stack([self._read_seismic(int(i)) for i in idx])
        return torch.from_numpy(np.ascontiguousarray(seis)), torch.from_numpy(self._vel[idx])

    def velocity(self, idx: np.ndarray) -> np.ndarray:
        return self._vel[idx]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction: expected a fraction in (0, 1), got {val_fraction}")
    order = np.random.default_rng([seed, n, 17]).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 2:
        raise UserError(f"{n} pairs leave fewer than 2 for training at --val-fraction {val_fraction}; use more data")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# ---------------------------------------------------------------------------------------------
# the run


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _resolve_dataset(opts: JudgeTrainOptions) -> tuple[str, NormConstants]:
    if opts.dataset:
        return opts.dataset, resolve_constants(opts.dataset)
    from ubdiff_onnx.data.synth import read_metadata

    families = set()
    for root in opts.data:
        try:
            fam = (read_metadata(root) or {}).get("family")
        except Exception:
            fam = None
        families.add(fam)
    if len(families) == 1 and isinstance(next(iter(families)), str):
        name = next(iter(families))
        return name, resolve_constants(name)
    raise UserError(f"--dataset is required for {', '.join(map(str, opts.data))}: an OpenFWI name (e.g. curvefault-a) or a constants .json")


def _open(opts: JudgeTrainOptions) -> list[OpenFWIFolder]:
    if not opts.data:
        raise UserError("DATA: give at least one OpenFWI folder of real pairs")
    folders = []
    for root in opts.data:
        f = open_folder(root)
        if tuple(f.seismic(0).shape) != SEISMIC_SAMPLE_SHAPE or tuple(f.velocity(0).shape) != VELOCITY_SAMPLE_SHAPE:
            raise UserError(f"{root}: samples are {f.seismic(0).shape} / {f.velocity(0).shape}; the judge needs {SEISMIC_SAMPLE_SHAPE} / {VELOCITY_SAMPLE_SHAPE}")
        folders.append(f)
    return folders


def _save(path: Path, doc: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(doc, fh)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``total``; a pure function of the step, so a
    resumed run needs no scheduler state. Cosine: short CPU runs end on a settled model instead of
    wherever the last constant-lr step left the noisy validation numbers."""
    if schedule == "constant" or total <= 1:
        return 1.0
    warm = max(1, int(0.05 * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _l1_l2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, true) + F.mse_loss(pred, true)


def _validate(net: InversionNet, feat: VelocityFeatureNet, pool: PairPool, val: np.ndarray, mean_map: np.ndarray, c: NormConstants, batch: int = 64) -> dict[str, Any]:
    net.eval()
    feat.eval()
    per: dict[str, list] = {}
    base: dict[str, list] = {}
    recon = []
    with torch.inference_mode():
        for s in range(0, len(val), batch):
            idx = val[s : s + batch]
            x, v = pool.batch(idx)
            p = net(x).numpy()
            recon.append(F.l1_loss(feat(v), v, reduction="none").mean(dim=(1, 2, 3)).numpy())
            for k, arr in inversion_metrics(p, v.numpy(), c.label_min, c.label_max).items():
                per.setdefault(k, []).extend(arr.tolist())
            for k, arr in inversion_metrics(np.broadcast_to(mean_map, v.shape), v.numpy(), c.label_min, c.label_max).items():
                base.setdefault(k, []).extend(arr.tolist())
    net.train()
    feat.train()
    return {"judge": pool_metrics(per), "mean_map_baseline": pool_metrics(base), "feature_net_recon_mae": float(np.concatenate(recon).mean())}


def _val_png(path: Path, net: InversionNet, pool: PairPool, val: np.ndarray, mean_map: np.ndarray, c: NormConstants) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    idx = val[:4]
    net.eval()
    with torch.inference_mode():
        x, v = pool.batch(idx)
        p = net(x).numpy()
    net.train()
    to_ms = lambda a: (np.asarray(a) + 1.0) * (c.label_max - c.label_min) / 2.0 + c.label_min  # noqa: E731
    fig, axes = plt.subplots(3, len(idx), figsize=(2.6 * len(idx), 7.6), squeeze=False)
    for j in range(len(idx)):
        for r, (title, arr) in enumerate((("real", v[j, 0].numpy()), ("judge(seismic)", p[j, 0]), ("mean map", mean_map[0]))):
            im = axes[r, j].imshow(to_ms(arr), vmin=c.label_min, vmax=c.label_max, cmap="viridis")
            axes[r, j].set_title(title if j else f"{title}", fontsize=9)
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.6, label="m/s")
    fig.suptitle("judge on validation pairs (same colour scale)")
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def train_judge(opts: JudgeTrainOptions) -> dict[str, Any]:
    """Train (or resume) a judge; returns the summary written to judge.json."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT {out}: exists and is not a folder")
    ckpt_path = out / JUDGE_FILE
    if ckpt_path.exists() and not (opts.resume or opts.overwrite):
        raise UserError(f"OUT {out}: already holds a judge; pass --resume to continue it or --overwrite to train a new one")
    if opts.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"--lr-schedule: expected constant or cosine, got {opts.lr_schedule!r}")
    if opts.batch_size < 2:
        raise UserError(f"--batch-size: expected >= 2 (BatchNorm), got {opts.batch_size}")
    folders = _open(opts)
    name, constants = _resolve_dataset(opts)
    fingerprints = [data_fingerprint(Path(r), len(f)) for r, f in zip(opts.data, folders)]
    cfg = opts.config

    prev: Optional[dict[str, Any]] = None
    if opts.resume and ckpt_path.exists():
        prev = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if prev.get("format") != JUDGE_FORMAT:
            raise UserError(f"{ckpt_path}: not a judge file; use another OUT or --overwrite")
        if [d["path"] for d in prev["data"]] != [d["path"] for d in fingerprints] or prev["config"] != cfg.to_dict() or prev["constants"]["data_min"] != constants.data_min:
            raise UserError(f"{ckpt_path}: trained with other data, sizes or constants ({', '.join(d['path'] for d in prev['data'])}); resume with the same DATA and options or use --overwrite")

    if opts.threads:
        torch.set_num_threads(opts.threads)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as `train`: 2 threads collapse on 2 busy cores
    out.mkdir(parents=True, exist_ok=True)
    if opts.overwrite:
        (out / "metrics.jsonl").unlink(missing_ok=True)

    pool = PairPool(folders, constants, cfg.time_decimation)
    train_idx, val_idx = split_indices(pool.n, opts.val_fraction, opts.seed)
    _say(f"judge: {pool.n} pairs from {len(folders)} folder(s) ({len(train_idx)} train, {len(val_idx)} validation), "
         f"width {cfg.width:g}, every {cfg.time_decimation} time sample(s); reading data")
    pool.load(_say)
    mean_map = pool.velocity(train_idx).mean(axis=0).astype(np.float32)

    torch.manual_seed(stable_seed(opts.seed, "judge-init"))
    net, feat = InversionNet(cfg), VelocityFeatureNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    fopt = torch.optim.AdamW(feat.parameters(), lr=opts.feature_lr, weight_decay=opts.weight_decay)
    per_epoch = len(train_idx) // min(opts.batch_size, len(train_idx))
    total = per_epoch * opts.epochs if opts.max_steps is None else min(per_epoch * opts.epochs, opts.max_steps)
    step, seconds = 0, 0.0
    if prev is not None:
        net.load_state_dict(prev["inversion"])
        feat.load_state_dict(prev["velocity_features"])
        opt.load_state_dict(prev["train_state"]["optimizer"])
        fopt.load_state_dict(prev["train_state"]["feature_optimizer"])
        step, seconds = int(prev["train_state"]["step"]), float(prev["train_state"].get("seconds", 0.0))
        if step >= total and (out / "judge.json").exists():
            _say(f"{ckpt_path}: already trained for {step} steps; nothing to do (raise --epochs or --steps to train on)")
            return json.loads((out / "judge.json").read_text())
        total = max(total, step)
        _say(f"resuming at step {step} of {total}")
    log = MetricsLog(out / "metrics.jsonl")

    def document(complete: bool, val: Optional[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": JUDGE_FORMAT, "version": JUDGE_VERSION, "complete": complete,
            "config": cfg.to_dict(), "constants": {"name": name, **constants.to_dict()},
            "shapes": {"seismic": list(SEISMIC_SAMPLE_SHAPE), "velocity": list(VELOCITY_SAMPLE_SHAPE)},
            "data": fingerprints, "split": {"val_fraction": opts.val_fraction, "seed": opts.seed, "val": val_idx.tolist()},
            "recipe": {"loss": "l1 + l2", "optimizer": "AdamW", "lr": opts.lr, "weight_decay": opts.weight_decay,
                       "feature_lr": opts.feature_lr, "lr_schedule": opts.lr_schedule, "batch_size": opts.batch_size, "epochs": opts.epochs, "max_steps": opts.max_steps},
            "mean_velocity": mean_map, "inversion": net.state_dict(), "velocity_features": feat.state_dict(),
            "val_metrics": val,
            "train_state": {"step": step, "total_steps": total, "seconds": seconds, "optimizer": opt.state_dict(), "feature_optimizer": fopt.state_dict()},
        }

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    net.train()
    feat.train()
    val: Optional[dict[str, Any]] = prev.get("val_metrics") if prev else None
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=Console(stderr=True), disable=not opts.progress)
    with GracefulInterrupt(_say) as stop, bar:
        task = bar.add_task("judge", total=total, completed=step, info="")
        while step < total:
            epoch, within = divmod(step, per_epoch)
            batches = epoch_batches(len(train_idx), opts.batch_size, stable_seed(opts.seed, "judge"), epoch, per_epoch)
            for b in batches[within:]:
                if step >= total:
                    break
                t0 = time.perf_counter()
                x, v = pool.batch(train_idx[b.numpy()])
                f = lr_factor(opts.lr_schedule, step, total)
                for group in opt.param_groups:
                    group["lr"] = opts.lr * f
                for group in fopt.param_groups:
                    group["lr"] = opts.feature_lr * f
                loss = _l1_l2(net(x), v)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                floss = _l1_l2(feat(v), v)
                fopt.zero_grad(set_to_none=True)
                floss.backward()
                fopt.step()
                step += 1
                seconds += time.perf_counter() - t0
                bar.update(task, advance=1, info=f"loss {loss.item():.4f}")
                if stop.requested:
                    break
            if stop.requested:
                _save(ckpt_path, document(False, val))
                raise TrainingInterrupted(f"interrupted at step {step} of {total}; checkpoint written to {ckpt_path}; continue with --resume", stop.signum)
            val = _validate(net, feat, pool, val_idx, mean_map, constants)
            log.write(kind="val", step=step, epoch=step / per_epoch, seconds=round(seconds, 1), **{f"val_{k}": v for k, v in val["judge"].items()},
                      **{f"baseline_{k}": v for k, v in val["mean_map_baseline"].items()}, feature_recon_mae=val["feature_net_recon_mae"])
            bar.update(task, info=f"val SSIM {val['judge']['ssim_openfwi']:.3f} (mean map {val['mean_map_baseline']['ssim_openfwi']:.3f})")
            _save(ckpt_path, document(step >= total, val))

    summary = {
        "judge": str(ckpt_path), "config": cfg.to_dict(), "parameters": int(sum(p.numel() for p in net.parameters())),
        "constants": {"name": name, **constants.to_dict()}, "data": fingerprints,
        "pairs": {"train": int(len(train_idx)), "val": int(len(val_idx))},
        "steps": step, "epochs": round(step / per_epoch, 3), "train_seconds": round(seconds, 1),
        "ms_per_training_sample": round(1000 * seconds / max(1, step * min(opts.batch_size, len(train_idx))), 2),
        "threads": torch.get_num_threads(), "recipe": document(True, val)["recipe"], "val": val,
    }
    atomic_write_text(out / "judge.json", json.dumps(summary, indent=2) + "\n")
    _val_png(out / "val.png", net, pool, val_idx, mean_map, constants)
    return summary
