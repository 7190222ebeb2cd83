"""INT8 weight ranges at export: 7-bit by default (exact on every CPU family), the manifest records
the ranges, QAT checkpoints keep the range they were trained with, failures say what to try."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ubdiff_onnx import qat
from ubdiff_onnx.checkpoints.format import Checkpoint, save_checkpoint
from ubdiff_onnx.config import preset
from ubdiff_onnx.conversion.qat_scales import clip_to_qat_ranges_
from ubdiff_onnx.conversion.validate import ComponentCheck, failure_message
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.qat.modules import quantize_layer_
from ubdiff_onnx.qat.state import checkpoint_weight_range, restore_qat_


def _qat_model(weight_range: str) -> UBDiff:
    torch.manual_seed(0)
    model = UBDiff(preset("tiny")).eval()
    qat.prepare_qat_(model, ["velocity", "seismic", "unet"], qat.QATConfig(weight_range=weight_range))
    qat.begin_calibration(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.decode(torch.rand(4, 32, generator=g) * 2 - 1)
        model.unet(torch.randn(4, 1, 32, generator=g), torch.randint(0, 256, (4,), generator=g))
    qat.end_calibration(model)
    return model


def test_qat_state_records_the_range_and_old_checkpoints_restore_as_full():
    model = _qat_model("reduced")
    state = qat.qat_state(model)
    weights = {k: e for k, e in state["quantizers"].items() if e["kind"] == "weight"}
    assert all((e["qmin"], e["qmax"]) == (-64, 64) for e in weights.values())
    assert state["config"]["weight_range"] == "reduced" and checkpoint_weight_range(state) == "reduced"
    # A checkpoint written before the range was recorded: full-range weights.
    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "weight_range"},
           "quantizers": {k: ({kk: vv for kk, vv in e.items() if kk not in ("qmin", "qmax")} if e["kind"] == "weight" else e)
                          for k, e in state["quantizers"].items()}}
    assert checkpoint_weight_range(old) == "full"
    restored = restore_qat_(UBDiff(preset("tiny")).eval(), old)
    ranges = {(q.qmin, q.qmax) for _, q in qat.quantizers(restored) if isinstance(q, qat.WeightFakeQuant)}
    assert ranges == {(-128, 127)}


def test_full_range_qat_checkpoint_is_not_exported_silently(tmp_path):
    from ubdiff_onnx.conversion.bundle import export_bundle

    model = _qat_model("full")
    path = tmp_path / "qat-full.pt"
    save_checkpoint(Checkpoint(model.cfg, qat.float_state_dict(model), None, qat.qat_state(model), {"dataset": "curvefault-a"}), path)
    with pytest.raises(UserError, match="full-range int8.*--weight-range full"):
        export_bundle(path, tmp_path / "out", "qdq")
    with pytest.raises(UserError, match="--weight-range: expected reduced or full"):
        export_bundle(path, tmp_path / "out", "qdq", weight_range="7bit")
    with pytest.raises(UserError, match="applies to --format qdq only"):
        export_bundle(path, tmp_path / "out", "fp32", weight_range="full")


def test_clip_to_qat_ranges_gives_the_fake_quant_integers():
    """Weights beyond ±64 steps (a scale LSQ shrank; outlier channels) are clamped per channel."""
    layer = torch.nn.Conv1d(8, 4, 3)
    holder = torch.nn.Sequential(layer)
    quantize_layer_(layer)
    layer.weight_quant.init_from(layer.weight)
    with torch.no_grad():
        layer.weight_quant.scale.mul_(torch.tensor([1.0, 0.5, 0.25, 1.0]))  # channels 1, 2 now overflow
        layer.weight[3, 0, 0] = 50.0  # an outlier far beyond its channel's range
    layer.eval()
    fq = layer.weight_quant(layer.weight).detach().clone()
    entries = {"0.weight_quant": {"kind": "weight", "axis": 0, "scale": layer.weight_quant.scale.detach(), "qmin": -64, "qmax": 64}}
    moved = clip_to_qat_ranges_(holder, entries)
    assert moved > 0
    s = layer.weight_quant.scale.detach()[:, None, None]
    q = torch.round(layer.weight.detach() / s)
    assert q.abs().max() <= 64 and torch.allclose(q * s, fq, atol=1e-6)


def test_bundles_record_their_int8_ranges(tiny_qdq_bundle):
    man = json.loads((tiny_qdq_bundle / "manifest.json").read_text())
    rec = man["int8"]
    assert rec["weights"]["range"] == [-64, 64] and rec["activations"]["range"] == [0, 255]
    assert rec["max_pair_sum"] == 32640 and rec["saturates_without_vnni"] is False
    for name, ext in rec["components"].items():
        assert -64 <= ext["weights"][0] and ext["weights"][1] <= 64, name
    assert man["quantization"]["scheme"]["weight_range"] == "reduced"


def test_failure_message_names_the_worst_outputs_and_what_to_try():
    checks = [ComponentCheck("unet", "model_output", [1], 0.1, 0.9, 0.98, False, gate=False),
              ComponentCheck("unet", "x0_estimate", [1], 0.1, 0.999, 0.98, True),
              ComponentCheck("velocity_decoder", "velocity", [1], 0.1, 0.97, 0.98, False),
              ComponentCheck("seismic_decoder", "seismic", [1], 0.1, 0.86, 0.98, False)]
    msg = failure_message(checks, quantized=True)
    assert "\n" not in msg
    assert msg.index("seismic_decoder.seismic cosine 0.8600") < msg.index("velocity_decoder.velocity cosine 0.9700")
    assert "passed: unet.x0_estimate 0.9990" in msg and "model_output" not in msg and "try: " in msg
    assert "--weight-range reduced" in failure_message(checks, quantized=True, weight_range="full")
    assert "QAT" in failure_message(checks, quantized=True, from_qat=True)
    fp32 = [ComponentCheck("unet", "model_output", [1], 3e-3, 1.0, 1e-4, False)]
    assert "differs from torch by 0.003 > 0.0001" in failure_message(fp32, quantized=False)
    assert np.isfinite(checks[0].cosine)
