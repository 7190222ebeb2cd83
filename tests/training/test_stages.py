"""A shortened run of every stage: checkpoints, metrics, QAT state and samples are all there."""

from __future__ import annotations

import json

import pytest
import torch

from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint
from ubdiff_onnx.config import preset
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.training import STAGES
from ubdiff_onnx.training.metrics import read_metrics


def test_every_stage_writes_a_complete_checkpoint(short_run):
    run_dir, results = short_run
    assert [r["stage"] for r in results] == list(STAGES)
    for stage in STAGES:
        ckpt = load_checkpoint(run_dir / f"{stage}.pt")
        assert ckpt.meta["stage"] == stage and ckpt.meta["stage_complete"] is True
        assert ckpt.meta["dataset"] == "curvefault-a" and ckpt.config.preset == "tiny"
        assert ckpt.meta["val"]["val_loss"] > 0
    assert (run_dir / "last.pt").resolve() == (run_dir / "qat-diffusion.pt").resolve()
    info = json.loads((run_dir / "run.json").read_text())
    assert {s: v["status"] for s, v in info["stages"].items()} == {s: "complete" for s in STAGES}


def test_metrics_have_validation_of_every_phase(short_run):
    run_dir, _ = short_run
    records = read_metrics(run_dir / "metrics.jsonl")
    phases = {r["phase"] for r in records if r["kind"] == "val"}
    assert phases == {"autoencoder", "seismic", "diffusion", "qat-velocity", "qat-seismic", "qat-diffusion"}
    assert any(r["kind"] == "train" for r in records)
    ae = [r for r in records if r["kind"] == "val" and r["phase"] == "autoencoder"][-1]
    assert 0 < ae["val_ssim"] <= 1 and ae["val_loss"] == pytest.approx(ae["val_l1"] + ae["val_l2"], rel=1e-6)


def test_checkpoints_keep_the_float_key_layout(short_run):
    """QAT checkpoints load into the plain float model (same module tree); scales ride in `qat`."""
    run_dir, _ = short_run
    keys = set(UBDiff(preset("tiny")).state_dict())
    for stage in STAGES:
        ckpt = load_checkpoint(run_dir / f"{stage}.pt")
        assert set(ckpt.state_dict) == keys
        build_model(ckpt)
    q = load_checkpoint(run_dir / "qat-diffusion.pt").qat
    assert q["components"] == ["velocity", "seismic", "unet"]
    assert any(k.startswith("unet.") for k in q["quantizers"]) and any(k.startswith("velocity_decoder.") for k in q["quantizers"])
    assert load_checkpoint(run_dir / "qat-decoders.pt").qat["components"] == ["velocity", "seismic"]
    assert load_checkpoint(run_dir / "diffusion.pt").ema is not None


def test_frozen_parts_do_not_move(short_run):
    """seismic trains only the seismic path; diffusion only the U-Net (encoder frozen throughout)."""
    run_dir, _ = short_run
    ae, se, di = (load_checkpoint(run_dir / f"{s}.pt").state_dict for s in ("autoencoder", "seismic", "diffusion"))

    def same(a, b, prefix):
        return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))

    assert same(ae, se, "encoder.") and same(ae, se, "velocity_") and same(ae, se, "unet.")
    assert not same(ae, se, "seismic_decoder.")
    assert same(se, di, "encoder.") and same(se, di, "seismic_") and same(se, di, "velocity_")
    assert not same(se, di, "unet.")


def test_samples_are_written_and_closer_than_noise(short_run):
    run_dir, results = short_run
    for stage in ("diffusion", "qat-diffusion"):
        s = next(r for r in results if r["stage"] == stage)["samples"]
        assert s["sample_nn"] < s["noise_nn"]
        assert (run_dir / "samples" / f"{stage}.npz").exists()
    import numpy as np

    with np.load(run_dir / "samples" / "diffusion.npz") as z:
        assert z["velocity"].shape[1:] == (1, 70, 70) and z["seismic"].shape[1:] == (5, 1000, 70)
        assert 1000 < float(z["velocity"].mean()) < 5000  # m/s, not normalised units


def test_unet_output_depends_on_t():
    torch.manual_seed(0)
    unet = UBDiff(preset("tiny")).unet.eval()
    x = torch.randn(2, 1, 32)
    with torch.no_grad():
        a = unet(x, torch.tensor([5, 5]))
        b = unet(x, torch.tensor([200, 200]))
    assert (a - b).abs().max() > 1e-3
