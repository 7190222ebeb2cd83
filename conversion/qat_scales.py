"""QAT scales → ``onnxruntime.quantization`` tensor overrides, so the QDQ graph uses what QAT learned.

``export --format qdq`` on a QAT checkpoint exports the folded float twin to FP32 ONNX and hands it
to ``quantize_static`` with ``TensorQuantOverrides`` that pin every tensor QAT quantized to the
checkpoint's scale and zero point. The link between a graph node and a QAT layer is the module path
the dynamo exporter records in each node's ``pkg.torch.onnx.name_scopes`` metadata:

- Conv / Gemm / MatMul with a weight initializer → layer ``P``: weight per-channel scales from
  ``P.weight_quant``, input from ``P.input_quant``, output from ``P.output_quant`` (a Linear on a
  3-D input exports as MatMul + Add: its MatMul output is pre-bias, so QAT has no scale for it);
- the velocity decoder's ConvTranspose rewrites (``P.linear``, ``P.phases.N``) use ``P``'s scales:
  each phase kernel and each row block of the point Linear holds whole output channels of the
  original kernel, so the same per-channel scale gives the same int8 weights;
- a MatMul of two activations inside attention block ``A`` is the n-th product of ``A.forward``
  (``qat.attention.matmul_names``): inputs from its ``a_quant``/``b_quant``, output ``output_quant``.

One tensor gets one Q/DQ pair in ONNX, while the fake-quant model may quantize it twice (a layer's
``output_quant`` then the next layer's ``input_quant``, or two layers reading one input). The last
quantizer applied wins — the consumer's input scale — and the number of such shared tensors is
reported. Tensors QAT left float (the U-Net time MLP by default) are quantized with calibrated
ranges so that every heavy operator still runs INT8; the report lists those layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Graph-module roots (conversion.components) → the model's module paths.
SCOPE_ROOTS: dict[str, dict[str, str]] = {
    "unet": {"unet": "unet"},
    "velocity_decoder": {"projector": "velocity_projector", "decoder": "velocity_decoder"},
    "seismic_decoder": {"projector": "seismic_projector", "decoder": "seismic_decoder"},
}
_REWRITE = re.compile(r"\.(linear|phases\.\d+)$")
HEAVY = ("Conv", "Gemm", "MatMul")


@dataclass
class QATOverrides:
    overrides: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    layers: int = 0
    """Graph nodes whose scales came from QAT."""
    calibrated_layers: list[str] = field(default_factory=list)
    """Module paths QAT kept float; quantized with calibrated ranges at export."""
    shared_tensors: int = 0
    """Tensors several QAT quantizers acted on (one scale chosen, see the module docstring)."""
    input_only: set[str] = field(default_factory=set)
    """Tensors QAT quantized only on their way into a layer (no producer ``output_quant``): other
    readers of them (a residual Add) saw float values in training — see :func:`float_side_inputs_`."""
    side_inputs_restored: int = 0
    shared_scale_ratio: float = 1.0
    """Largest ratio between the scales of the quantizers that share one tensor (1: identical)."""

    def report(self) -> dict[str, Any]:
        return {"layers_from_qat": self.layers, "tensors_from_qat": len(self.overrides),
                "calibrated_at_export": sorted(set(self.calibrated_layers)), "shared_tensors": self.shared_tensors,
                "shared_scale_ratio": round(self.shared_scale_ratio, 4), "float_side_inputs": self.side_inputs_restored}


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32).reshape(-1)


def module_path(node, component: str) -> str | None:
    """The model module path of ``node`` from the exporter's name-scope metadata (None if absent)."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if not scopes:
        return None
    names = [s.strip().strip("'\"") for s in scopes.strip("[]").split(",")]
    modules = [s for s in names[:-1] if s]  # the last entry is the fx node, not a module
    if not modules:
        return None
    head, _, rest = modules[-1].partition(".")
    root = SCOPE_ROOTS[component].get(head)
    if root is None:
        return None
    return f"{root}.{rest}" if rest else root


def _activation(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"scale": np.array(float(entry["scale"]), dtype=np.float32),
             "zero_point": np.array(int(entry["zero_point"]), dtype=np.uint8)}]


def _weight_axis(node, attrs: dict[str, Any]) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return 1  # MatMul(x, W[K, N])


def qat_overrides(model, component: str, quantizers: dict[str, dict[str, Any]], fake_quant_model) -> QATOverrides:
    """Overrides for the FP32 graph ``model`` (an ``onnx.ModelProto`` of ``component``)."""
    from onnx import helper
    from ubdiff_onnx.qat.attention import matmul_names

    inits = {i.name: i for i in model.graph.initializer}
    result = QATOverrides()
    chosen: dict[str, tuple[int, str]] = {}  # tensor → (priority, quantizer); inputs (0) beat outputs (1)
    seen: dict[str, set[str]] = {}
    matmul_index: dict[str, int] = {}

    def want(tensor: str, quantizer: str, priority: int) -> None:
        if quantizer not in quantizers:
            return
        seen.setdefault(tensor, set()).add(quantizer)
        if tensor not in chosen or priority < chosen[tensor][0]:
            chosen[tensor] = (priority, quantizer)

    for node in model.graph.node:
        if node.op_type not in HEAVY:
            continue
        path = module_path(node, component)
        if path is None:
            raise RuntimeError(f"{component}: node {node.name} ({node.op_type}) has no module scope; cannot place QAT scales")
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None:  # activation × activation: an attention product
            names = matmul_names(fake_quant_model.get_submodule(path))
            if names is None:
                result.calibrated_layers.append(path)
                continue
            i = matmul_index.get(path, 0)
            matmul_index[path] = i + 1
            if i >= len(names):
                raise RuntimeError(f"{component}: {path} has more MatMul nodes than its forward's {len(names)} products")
            qm = f"{path}.{names[i]}"
            want(node.input[0], f"{qm}.a_quant", 0)
            want(node.input[1], f"{qm}.b_quant", 0)
            want(node.output[0], f"{qm}.output_quant", 1)
            result.layers += 1
            continue
        layer, rewrite = path, None
        if f"{layer}.weight_quant" not in quantizers and _REWRITE.search(layer):
            rewrite = _REWRITE.search(layer).group(1)
            layer = _REWRITE.sub("", layer)
        wq = quantizers.get(f"{layer}.weight_quant")
        if wq is None:
            result.calibrated_layers.append(path)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis = _weight_axis(node, attrs)
        channels = int(weight.dims[axis])
        scale = _np(wq["scale"])
        if len(scale) != channels:
            if rewrite != "linear" or channels % len(scale):
                raise RuntimeError(f"{component}: {path} weight has {channels} channels on axis {axis}, QAT stored {len(scale)} scales")
            scale = np.repeat(scale, channels // len(scale))  # point rewrite: rows are (out channel, ky, kx)
        result.overrides[weight.name] = [{"axis": axis, "scale": np.float32(s), "zero_point": np.int8(0)} for s in scale]
        want(node.input[0], f"{layer}.input_quant", 0)
        # A Linear on a 3-D input exports as MatMul + Add(bias): the MatMul output is not the layer's.
        pre_bias = node.op_type == "MatMul" and getattr(fake_quant_model.get_submodule(layer), "bias", None) is not None
        if not pre_bias:
            want(node.output[0], f"{layer}.output_quant", 1)
        result.layers += 1

    for tensor, (_, quantizer) in chosen.items():
        result.overrides[tensor] = _activation(quantizers[quantizer])
        if len(seen[tensor]) > 1:
            scales = [float(quantizers[q]["scale"]) for q in seen[tensor]]
            result.shared_tensors += 1
            result.shared_scale_ratio = max(result.shared_scale_ratio, max(scales) / min(scales))
        if not any(q.endswith(".output_quant") for q in seen[tensor]):
            result.input_only.add(tensor)
    return result


def float_side_inputs_(model, input_only: set[str]) -> int:
    """Give non-quantized readers of an input-only tensor its float value back, in place.

    ``quantize_static`` routes *every* reader of a quantized tensor through its DequantizeLinear,
    so a residual ``h + x`` would add the quantized ``x``; in the fake-quant model only the layer
    that quantizes ``x`` sees it rounded. Returns how many node inputs were restored.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    restored = 0
    dq_source: dict[str, str] = {}
    for dq in model.graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in input_only:
            dq_source[dq.output[0]] = q.input[0]
    for node in model.graph.node:
        if node.op_type in HEAVY or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if name in dq_source:
                node.input[i] = dq_source[name]
                restored += 1
    return restored


def clip_to_qat_ranges_(model, quantizers: dict[str, dict[str, Any]]) -> int:
    """Clamp each QAT layer's float weight to [qmin·scale, qmax·scale] per output channel, in place;
    returns how many weights moved.

    The fake-quant clamps there; ``quantize_static`` quantizes an overridden weight with the given
    scale but clips only to the int8 type ([-128, 127]), so without this a 7-bit QAT weight that LSQ
    pushed past ±64 steps would come out beyond the range the bundle declares (and saturate on x86
    without VNNI). Clamping first gives exactly the fake-quant's integers."""
    import torch

    moved = 0
    with torch.no_grad():
        for name, entry in quantizers.items():
            if entry.get("kind") != "weight":
                continue
            weight = model.get_submodule(name.removesuffix(".weight_quant")).weight
            shape = [1] * weight.ndim
            shape[int(entry["axis"])] = -1
            scale = torch.as_tensor(_np(entry["scale"]), dtype=weight.dtype).reshape(shape)
            lo, hi = scale * int(entry.get("qmin", -128)), scale * int(entry.get("qmax", 127))
            clamped = torch.minimum(torch.maximum(weight, lo), hi)
            moved += int((clamped != weight).sum())
            weight.copy_(clamped)
    return moved


def restrict(overrides: dict[str, list[dict[str, Any]]], model) -> dict[str, list[dict[str, Any]]]:
    """Only the overrides whose tensor exists in ``model`` (``quantize_static`` rejects the others;
    e.g. the big seismic weight is gone once it is 4-bit MatMulNBits)."""
    names = {i.name for i in model.graph.initializer} | {t for n in model.graph.node for t in (*n.input, *n.output)}
    return {k: v for k, v in overrides.items() if k in names}
