"""Shared fixtures. The parity fixture (made with the original UB-Diff code) lives in
tests/fixtures/parity; its checkpoints are regenerated on demand from the exact value formula."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

PARITY = Path(__file__).parent / "fixtures" / "parity"


def _regen():
    sys.path.insert(0, str(PARITY))
    try:
        import regen_checkpoint
    finally:
        sys.path.pop(0)
    return regen_checkpoint


@pytest.fixture(scope="session")
def parity_original() -> dict[str, np.ndarray]:
    with np.load(PARITY / "original.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def parity_refactor() -> dict[str, np.ndarray]:
    with np.load(PARITY / "refactor.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def regen():
    return _regen()


@pytest.fixture(scope="session")
def original_entries() -> list:
    return json.loads((PARITY / "original_keys.json").read_text())


@pytest.fixture(scope="session")
def refactor_entries() -> list:
    return json.loads((PARITY / "refactor_keys.json").read_text())


@pytest.fixture(scope="session")
def original_diffusion_file(tmp_path_factory, regen, original_entries) -> Path:
    """The original ``model-N.pt`` layout (model + EMA + optimizer), ~1 GB on disk."""
    import torch

    path = tmp_path_factory.mktemp("orig") / "model-0.pt"
    torch.save(regen.make_checkpoint(original_entries, "jy-diffusion"), path)
    return path


@pytest.fixture(scope="session")
def original_checkpoint(tmp_path_factory, original_diffusion_file) -> Path:
    """Our checkpoint converted from the original diffusion file (EMA weights), through the CLI
    exactly as docs/checkpoints.md shows it."""
    from typer.testing import CliRunner

    from ubdiff_onnx.cli.main import app

    path = tmp_path_factory.mktemp("ours") / "original.pt"
    result = CliRunner().invoke(app, ["convert-checkpoint", str(original_diffusion_file), str(path), "--layout", "original",
                                      "--use-ema", "--dataset", "curvefault-a"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def original_model(original_checkpoint):
    from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint

    return build_model(load_checkpoint(original_checkpoint))


@pytest.fixture(scope="session")
def original_fp32_bundle(tmp_path_factory, original_checkpoint) -> Path:
    from ubdiff_onnx.conversion.bundle import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "original-fp32"
    export_bundle(original_checkpoint, out, "fp32")
    return out


@pytest.fixture(scope="session")
def refactor_file(tmp_path_factory, regen, refactor_entries) -> Path:
    import torch

    path = tmp_path_factory.mktemp("refactor") / "refactor.pt"
    torch.save(regen.make_checkpoint(refactor_entries, "model"), path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny-preset checkpoint (seeded)."""
    import torch

    from ubdiff_onnx.checkpoints.format import Checkpoint, save_checkpoint
    from ubdiff_onnx.config import preset
    from ubdiff_onnx.models.ubdiff import UBDiff

    torch.manual_seed(0)
    cfg = preset("tiny")
    model = UBDiff(cfg)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(Checkpoint(cfg, model.state_dict(), meta={"dataset": "curvefault-a"}), path)
    return path


@pytest.fixture(scope="session")
def tiny_qat_checkpoint(tmp_path_factory) -> Path:
    """A seeded tiny checkpoint with all three components converted to fake-quant and calibrated
    on random inputs (the file layout ``train --stage qat-*`` writes), no training."""
    import torch

    from ubdiff_onnx import qat
    from ubdiff_onnx.checkpoints.format import Checkpoint, save_checkpoint
    from ubdiff_onnx.config import preset
    from ubdiff_onnx.models.ubdiff import UBDiff

    torch.manual_seed(0)
    model = UBDiff(preset("tiny")).eval()
    qat.prepare_qat_(model, ["velocity", "seismic", "unet"])
    qat.begin_calibration(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            model.decode(torch.rand(8, 32, generator=g) * 2 - 1)
            model.unet(torch.randn(8, 1, 32, generator=g), torch.randint(0, 256, (8,), generator=g))
    qat.end_calibration(model)
    path = tmp_path_factory.mktemp("tiny-qat") / "qat.pt"
    save_checkpoint(Checkpoint(model.cfg, qat.float_state_dict(model), None, qat.qat_state(model), {"dataset": "curvefault-a"}), path)
    return path


def _cli_export(tmp_path_factory, name: str, checkpoint: Path, fmt: str) -> Path:
    """``ubdiff-onnx export CHECKPOINT OUT --format FMT`` through the real CLI; returns OUT."""
    from typer.testing import CliRunner

    from ubdiff_onnx.cli.main import app

    out = tmp_path_factory.mktemp("bundles") / name
    result = CliRunner().invoke(app, ["export", str(checkpoint), str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def tiny_qat_bundle(tmp_path_factory, tiny_qat_checkpoint) -> Path:
    """``export --format qdq`` from QAT scales, through the CLI (no --calibrate)."""
    return _cli_export(tmp_path_factory, "tiny-qat", tiny_qat_checkpoint, "qdq")


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


@pytest.fixture(scope="session")
def tiny_fp32_bundle(tmp_path_factory, tiny_checkpoint) -> Path:
    """Made through the real CLI (``ubdiff-onnx export``), so the CLI path is covered once."""
    return _cli_export(tmp_path_factory, "tiny-fp32", tiny_checkpoint, "fp32")


def fast_quantization():
    """A smaller calibration set than the defaults, to keep the suite fast (same code path)."""
    from ubdiff_onnx.conversion.quantize import QuantizationConfig

    return QuantizationConfig(calibration_samples=8, calibration_trajectories=2, calibration_steps=10)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """16 curvefault-a samples made by the real wave simulation (a few seconds)."""
    from ubdiff_onnx.data.synth import synthesize

    out = tmp_path_factory.mktemp("data") / "curvefault-a"
    synthesize(out, "curvefault-a", samples=16, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_qdq_bundle(tmp_path_factory, tiny_checkpoint, small_dataset) -> Path:
    from ubdiff_onnx.conversion.bundle import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-qdq"
    export_bundle(tiny_checkpoint, out, "qdq", calibrate=small_dataset, qconfig=fast_quantization())
    return out


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory, small_dataset) -> Path:
    """A judge trained for a few steps on the 16 simulated pairs (mechanics, not quality)."""
    from ubdiff_onnx.models.inversionnet import JudgeConfig
    from ubdiff_onnx.training.judge import JudgeTrainOptions, train_judge

    out = tmp_path_factory.mktemp("judge") / "judge"
    train_judge(JudgeTrainOptions(data=[small_dataset], out=out, config=JudgeConfig(width=0.125, time_decimation=8, feature_width=0.25, feature_dim=8),
                                  epochs=1, max_steps=3, batch_size=4, val_fraction=0.25, threads=1, progress=False))
    return out
