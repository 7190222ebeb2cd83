"""The fake-quant forward exports with torch.onnx.export(dynamo=True, opset 18) to
QuantizeLinear/DequantizeLinear, with a dynamic batch, and onnxruntime agrees with torch."""

from __future__ import annotations

import collections
import copy
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from tests.qat.conftest import latents
from ubdiff_onnx import qat
from ubdiff_onnx.qat import QMatMul
from ubdiff_onnx.qat.modules import quantize_layer_


class Small(nn.Module):
    """Conv → ReLU → ConvTranspose → flatten → Linear, and a quantized MatMul."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 4, 2, 1)
        self.fc = nn.Linear(3 * 8 * 8, 6)
        self.mm = QMatMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.up(torch.relu(self.conv(x))).flatten(1))
        return self.mm(y[:, :, None], y[:, None, :])


def _export(module: nn.Module, example: torch.Tensor, path) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=18,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    return onnx.load(str(path))


def _ort(path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def test_small_module_exports_to_qdq(tmp_path):
    torch.manual_seed(0)
    m = Small()
    for layer in (m.conv, m.up, m.fc):
        quantize_layer_(layer)
    qat.begin_calibration(m)
    with torch.no_grad():
        m(torch.randn(8, 2, 4, 4))
    qat.end_calibration(m)
    m.eval()
    model = _export(m, torch.randn(2, 2, 4, 4), tmp_path / "small.onnx")
    ops = collections.Counter(n.op_type for n in model.graph.node)
    # 3 layers × (input, weight, output) + matmul (a, b, output)
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 12
    assert {"Conv", "ConvTranspose", "MatMul"} <= set(ops)
    x = torch.randn(5, 2, 4, 4)  # another batch size than exported with
    with torch.no_grad():
        want = m(x).numpy()
    got = _ort(tmp_path / "small.onnx", x)
    step = max(q.scale.item() for _, q in qat.quantizers(m.mm))
    assert np.abs(got - want).max() <= step + 1e-6  # at most one rounding step apart


class VelocityPath(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode_velocity(z)


def test_tiny_velocity_decoder_exports_to_qdq(float_model, tmp_path):
    model = copy.deepcopy(float_model)
    qat.prepare_qat_(model, ["velocity"])
    qat.begin_calibration(model.velocity_projector), qat.begin_calibration(model.velocity_decoder)
    with torch.no_grad():
        model.decode_velocity(latents(16, torch.Generator().manual_seed(0)))
    qat.end_calibration(model)
    model.eval()
    onnx_model = _export(VelocityPath(model), latents(2, torch.Generator().manual_seed(1)), tmp_path / "vd.onnx")
    ops = collections.Counter(n.op_type for n in onnx_model.graph.node)
    layers = len(list(qat.quant_layers(model)))
    assert layers == 12  # projector fc + 10 blocks + head
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 3 * layers
    assert "BatchNormalization" not in ops  # folded
    z = latents(3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.decode_velocity(z).numpy()
    assert np.abs(_ort(tmp_path / "vd.onnx", z) - want).max() < 5e-3  # tanh output, normalised units
