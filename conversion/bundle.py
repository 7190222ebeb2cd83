"""``export``: checkpoint → bundle folder (three components + manifest.json), written atomically."""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ubdiff_onnx import __version__
import numpy as np

from ubdiff_onnx.checkpoints.format import Checkpoint, build_model, load_checkpoint
from ubdiff_onnx.conversion.quantize import QuantizationConfig
from ubdiff_onnx.conversion.staging import check_output_dir, staged_dir
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.manifest import EXCLUDED_ONNXRUNTIME, MIN_ONNXRUNTIME, write_manifest
from ubdiff_onnx.runtime.normalization import NormConstants, resolve_constants
from ubdiff_onnx.runtime.schedule import make_schedule

FORMATS = ("fp32", "qdq", "torchscript")
WEIGHTS = {"fp32": ("fp32",), "qdq": ("int8", "int4"), "torchscript": ("fp32", "int8")}
"""Weight precisions each format offers; the first is the default."""


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
        "excluded_onnxruntime": sorted(EXCLUDED_ONNXRUNTIME),
        "weights": {"use_ema": use_ema, "source": ckpt.meta.get("imported_from") or ckpt.meta.get("run_dir")},
        "exported_on": {"python": platform.python_version(), "machine": platform.machine()},
        "components": components,
        **({"student": _student_block(ckpt)} if ckpt.meta.get("student") else {}),
    }


def _student_block(ckpt: Checkpoint) -> dict[str, Any]:
    """A distilled student's sampler and timesteps (``runtime.student``), for ``sample`` to use."""
    student = dict(ckpt.meta["student"])
    if not ckpt.meta.get("stage_complete"):
        student["note"] = "exported before its distillation finished"
    return student


def calibration_velocities(data_dir: Path, dataset: dict[str, Any], samples: int, seed: int) -> np.ndarray:
    """Normalised velocity maps (N,1,70,70) drawn (seeded) from an OpenFWI folder."""
    from ubdiff_onnx.data.openfwi import open_folder
    from ubdiff_onnx.runtime.normalization import NormConstants, normalize_velocity

    folder = open_folder(data_dir)
    n = len(folder)
    if n == 0:
        raise UserError(f"--calibrate {data_dir}: no samples")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
    consts = NormConstants.from_dict(dataset)
    return np.stack([normalize_velocity(folder.velocity(int(i)), consts) for i in idx]).astype(np.float32)


def _with_weight_range(qconfig: QuantizationConfig, weight_range: str | None, ckpt: Checkpoint,
                       calibrate: Path | None, checkpoint: Path) -> QuantizationConfig:
    """``qconfig`` with the int8 weight range asked for (default "reduced"); a QAT export must use
    the range the checkpoint was trained with."""
    from ubdiff_onnx.runtime.int8_host import WEIGHT_RANGES

    if weight_range is not None and weight_range not in WEIGHT_RANGES:
        raise UserError(f"--weight-range: expected {' or '.join(WEIGHT_RANGES)}, got {weight_range!r}")
    wanted = weight_range or qconfig.weight_range
    if ckpt.qat and calibrate is None:
        from ubdiff_onnx.qat.state import checkpoint_weight_range

        trained = checkpoint_weight_range(ckpt.qat, str(checkpoint))
        if trained != wanted:
            if trained == "full":
                raise UserError(f"{checkpoint}: its QAT weights are full-range int8 [-128, 127], which saturate on x86 CPUs "
                                "without VNNI; retrain its qat stages with this version (7-bit weights), or pass "
                                "--weight-range full for a bundle that runs on ARM and VNNI x86 only")
            raise UserError(f"{checkpoint}: its QAT weights were trained in the {trained} range; --weight-range {wanted} "
                            f"would change them (use --weight-range {trained}, or --calibrate DATA for post-training quantization)")
    return dataclasses.replace(qconfig, weight_range=wanted)


def export_bundle(
    checkpoint: Path,
    out_dir: Path,
    fmt: str = "fp32",
    *,
    dataset: str | None = None,
    use_ema: bool = False,
    overwrite: bool = False,
    tolerance: float | None = None,
    calibrate: Path | None = None,
    weights: str | None = None,
    qconfig: QuantizationConfig | None = None,
    weight_range: str | None = None,
    progress: Callable[[str], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> ExportResult:
    """Checkpoint → validated bundle in ``out_dir`` (atomic). See the CLI ``export`` for the options.
    ``notice`` hears lasting messages (stale staging folders of killed exports removed)."""
    from ubdiff_onnx.conversion.export_onnx import export_fp32_components
    from ubdiff_onnx.conversion.validate import PTQ_MIN_COSINE, QAT_MIN_COSINE, against_fp32, validate_bundle

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not available in this version; implemented: {', '.join(FORMATS)}")
    weights = weights or WEIGHTS[fmt][0]
    if weights not in WEIGHTS[fmt]:
        raise UserError(f"--weights: --format {fmt} offers {', '.join(WEIGHTS[fmt])}, got {weights!r}")
    check_output_dir(out_dir, overwrite)  # fail before the (slow) export
    ckpt = load_checkpoint(checkpoint)
    if fmt == "qdq" and calibrate is None and not ckpt.qat:
        raise UserError(f"{checkpoint}: has no QAT scales; pass --calibrate DATA_DIR for post-training quantization (or train --stage qat-decoders and qat-diffusion)")
    if calibrate is not None and fmt != "qdq":
        raise UserError("--calibrate applies to --format qdq only")
    if weight_range is not None and fmt != "qdq":
        raise UserError("--weight-range applies to --format qdq only")
    qconfig = qconfig or QuantizationConfig()
    if fmt == "qdq":
        qconfig = _with_weight_range(qconfig, weight_range, ckpt, calibrate, checkpoint)
    ds = dataset_block(ckpt, dataset)
    model = build_model(ckpt, use_ema=use_ema, source=str(checkpoint))  # a QAT checkpoint: its folded float twin
    from_qat = fmt == "qdq" and calibrate is None
    reference, fp32_reference = model, None
    quant_report = None
    with staged_dir(out_dir, overwrite, notice) as stage:
        if fmt == "fp32":
            components = export_fp32_components(model, stage, progress)
            precision = "fp32"
        elif fmt == "torchscript":
            from ubdiff_onnx.conversion.export_torchscript import export_torchscript_components

            components = export_torchscript_components(model, stage, int8=weights == "int8", progress=progress)
            precision = "torchscript-int8" if weights == "int8" else "torchscript"
        else:
            from ubdiff_onnx.conversion.export_qdq import export_qdq_components
            from ubdiff_onnx.conversion.quantize import calibration_feeds

            qcfg = dataclasses.replace(qconfig, int4_seismic=weights == "int4")
            if from_qat:
                from ubdiff_onnx.qat.state import model_from_checkpoint

                reference, fp32_reference = model_from_checkpoint(ckpt, use_ema=use_ema, source=str(checkpoint)), model
                if progress:
                    progress("calibration trajectories")
                feeds = calibration_feeds(reference, None, qcfg)
                components, quant_report = export_qdq_components(
                    model, stage, feeds, qcfg, progress, qat_quantizers=ckpt.qat["quantizers"], fake_quant_model=reference)
                quant_report["method"] = ("quantization-aware training: QAT scales via onnxruntime.quantization.quantize_static "
                                          "TensorQuantOverrides; layers QAT kept float use calibrated ranges")
                quant_report["qat_components"] = list(ckpt.qat.get("components", []))
            else:
                velocities = calibration_velocities(Path(calibrate), ds, qcfg.calibration_samples, qcfg.seed)
                components, quant_report = export_qdq_components(model, stage, calibration_feeds(model, velocities, qcfg), qcfg, progress)
                quant_report["method"] = "post-training static (onnxruntime.quantization.quantize_static)"
                quant_report["calibration_data"] = str(calibrate)
            precision = "int4" if weights == "int4" else "qdq"
        data = manifest_data(ckpt, precision, components, ds, use_ema)
        if quant_report is not None:
            data["int8"] = quant_report.pop("int8")
            data["quantization"] = quant_report
        write_manifest(stage, data)
        quantized = precision not in ("fp32", "torchscript")
        tol = tolerance if tolerance is not None else (1e-5 if precision == "torchscript" else 1e-4)
        min_cosine: float | dict[str, float] = PTQ_MIN_COSINE
        if from_qat:
            # QAT trained int8 weights; 4-bit seismic weights are a post-training step on top of them,
            # so that component is held to the post-training bound (measured and reported either way).
            min_cosine = {"unet": QAT_MIN_COSINE, "velocity_decoder": QAT_MIN_COSINE,
                          "seismic_decoder": PTQ_MIN_COSINE if weights == "int4" else QAT_MIN_COSINE}
        checks = validate_bundle(reference, stage, tol, quantized=quantized, torchscript=fmt == "torchscript",
                                 min_cosine=min_cosine, fp32_model=fp32_reference)
        bad = [c for c in checks if c.gate and not c.ok]
        if bad:
            from ubdiff_onnx.conversion.validate import failure_message

            raise UserError(failure_message(checks, quantized=quantized, from_qat=from_qat,
                                            weight_range=qconfig.weight_range if quantized else None))
        data["validation"] = {f"{c.component}.{c.output}": {"max_abs_diff": c.max_abs_diff, "cosine": c.cosine, "checked": c.gate} for c in checks}
        if fp32_reference is not None:
            data["validation_against_fp32"] = against_fp32(stage)
        manifest = write_manifest(stage, data)
    return ExportResult(Path(out_dir), json.loads((Path(out_dir) / manifest.name).read_text()), checks)
