"""``export``: checkpoint → bundle folder (three components + manifest.json), written atomically."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ubdiff_onnx import __version__
from ubdiff_onnx.checkpoints.format import Checkpoint, build_model, load_checkpoint
from ubdiff_onnx.conversion.staging import check_output_dir, staged_dir
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.manifest import write_manifest
from ubdiff_onnx.runtime.normalization import NormConstants, resolve_constants
from ubdiff_onnx.runtime.schedule import make_schedule

FORMATS = ("fp32",)
"""Implemented so far. ``qdq`` and ``torchscript`` (SPEC §3) arrive with the conversion issue."""
MIN_ONNXRUNTIME = "1.22.0"  # 1.21.0 crashes with "Illegal instruction" on a Pi 4


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    checks: list


def dataset_block(ckpt: Checkpoint, dataset: str | None) -> dict[str, Any]:
    """Normalisation constants for the runtime: ``--dataset`` wins, else what training recorded."""
    name = dataset or ckpt.meta.get("dataset")
    if name is None:
        raise UserError("--dataset: the checkpoint does not record its training dataset; pass --dataset NAME (e.g. curvefault-a) or a constants .json")
    consts: NormConstants = resolve_constants(name)
    return {"name": Path(str(name)).stem if str(name).endswith(".json") else str(name), **consts.to_dict()}


def manifest_data(ckpt: Checkpoint, precision: str, components: dict[str, Any], dataset: dict[str, Any], use_ema: bool) -> dict[str, Any]:
    cfg = ckpt.config
    tables = make_schedule(cfg.beta_schedule, cfg.timesteps, cfg.objective, cfg.cosine_s)
    return {
        "created_by": f"ubdiff-onnx {__version__}",
        "precision": precision,
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "latent_dim": cfg.latent_dim,
        "objective": cfg.objective,
        "schedule": {
            "beta_schedule": cfg.beta_schedule,
            "timesteps": cfg.timesteps,
            "cosine_s": cfg.cosine_s,
            "objective": cfg.objective,
            "betas": [float(b) for b in tables.betas],
        },
        "dataset": dataset,
        "min_onnxruntime": MIN_ONNXRUNTIME,
        "weights": {"use_ema": use_ema, "source": ckpt.meta.get("imported_from") or ckpt.meta.get("run_dir")},
        "exported_on": {"python": platform.python_version(), "machine": platform.machine()},
        "components": components,
    }


def export_bundle(
    checkpoint: Path,
    out_dir: Path,
    fmt: str = "fp32",
    *,
    dataset: str | None = None,
    use_ema: bool = False,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    from ubdiff_onnx.conversion.export_onnx import export_fp32_components
    from ubdiff_onnx.conversion.validate import validate_bundle

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not available in this version; implemented: {', '.join(FORMATS)}")
    check_output_dir(out_dir, overwrite)  # fail before the (slow) export
    ckpt = load_checkpoint(checkpoint)
    ds = dataset_block(ckpt, dataset)
    model = build_model(ckpt, use_ema=use_ema, source=str(checkpoint))
    with staged_dir(out_dir, overwrite) as stage:
        components = export_fp32_components(model, stage, progress)
        data = manifest_data(ckpt, fmt, components, ds, use_ema)
        write_manifest(stage, data)
        checks = validate_bundle(model, stage, tolerance)
        bad = [c for c in checks if not c.ok]
        if bad:
            c = bad[0]
            raise UserError(f"validation failed: {c.component}.{c.output} differs from torch by {c.max_abs_diff:.3g} > {c.tolerance:g}")
        data["validation"] = {f"{c.component}.{c.output}": {"max_abs_diff": c.max_abs_diff, "cosine": c.cosine} for c in checks}
        manifest = write_manifest(stage, data)
    return ExportResult(Path(out_dir), json.loads((Path(out_dir) / manifest.name).read_text()), checks)
