"""Count multiply-accumulates (MACs) per call of each ONNX component, at batch 1, from the graph.

How: load the graph without its weights' values (big initializers are turned into typed graph
inputs, so only their shapes travel), fix every dynamic input dimension to 1, run ONNX shape
inference with data propagation (``Shape → Gather → Reshape`` chains resolve), then sum over the
heavy nodes:

* ``Conv`` / ``ConvInteger`` / ``QLinearConv``: N · C_out · ∏(output spatial) · C_in/groups · ∏(kernel)
* ``ConvTranspose``: N · C_in · ∏(input spatial) · C_out/groups · ∏(kernel)
* ``Gemm`` / ``QGemm``: M · K · N
* ``MatMul`` / ``MatMulInteger`` / ``QLinearMatMul``: ∏(broadcast batch dims) · M · K · N
* ``MatMulNBits`` (com.microsoft, int4 weights): ∏(A's leading dims) · K · N (``K``, ``N`` attributes)

Everything else (normalisations, activations, softmax, Q/DQ, elementwise) is ignored: it is a few
percent of the arithmetic at most and does not run on the FMA/VNNI units this is compared with.

This module imports ``onnx``; the bench orchestrator runs it in its own subprocess
(``python -m ubdiff_onnx.bench.macs BUNDLE``) so neither the orchestrator nor any timed worker
carries the model in memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CONV = {"Conv", "ConvInteger", "QLinearConv"}
GEMM = {"Gemm", "QGemm"}
MATMUL = {"MatMul", "MatMulInteger", "QLinearMatMul"}
HEAVY = CONV | GEMM | MATMUL | {"ConvTranspose", "MatMulNBits"}

# Which input holds the activation / weight for each op (QLinear* interleave scales and zero points).
_X_W = {
    "Conv": (0, 1), "ConvInteger": (0, 1), "ConvTranspose": (0, 1), "QLinearConv": (0, 3),
    "Gemm": (0, 1), "QGemm": (0, 3), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
}


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _strip_weights(model, keep_below: int = 1024) -> None:
    """Replace big initializers by typed graph inputs: shape inference needs their shapes only."""
    import onnx

    g = model.graph
    keep, moved = [], []
    for init in g.initializer:
        if _prod(init.dims) >= keep_below:
            moved.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    g.input.extend(moved)


def _fix_batch(model) -> None:
    for inp in model.graph.input:
        if not inp.type.HasField("tensor_type"):
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1


def _shapes(model) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = []
        for d in t.shape.dim:
            if not d.HasField("dim_value"):
                dims = None
                break
            dims.append(int(d.dim_value))
        if dims is not None:
            out[vi.name] = dims
    for init in g.initializer:
        out[init.name] = [int(d) for d in init.dims]
    return out


def _attr(node, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node, shapes: dict[str, list[int]]) -> int | None:
    op = node.op_type
    if op == "MatMulNBits":
        a = shapes.get(node.input[0])
        k, n = _attr(node, "K"), _attr(node, "N")
        if a is None or k is None or n is None:
            return None
        return _prod(a[:-1]) * int(k) * int(n)
    xi, wi = _X_W[op]
    x, w = shapes.get(node.input[xi]), shapes.get(node.input[wi])
    if x is None or w is None:
        return None
    if op in CONV:
        y = shapes.get(node.output[0])
        if y is None:
            return None
        # w: (C_out, C_in/groups, *k); y: (N, C_out, *spatial)
        return y[0] * w[0] * _prod(y[2:]) * w[1] * _prod(w[2:])
    if op == "ConvTranspose":
        # w: (C_in, C_out/groups, *k); x: (N, C_in, *spatial)
        return x[0] * x[1] * _prod(x[2:]) * w[1] * _prod(w[2:])
    if op in GEMM:
        trans_a, trans_b = int(_attr(node, "transA", 0)), int(_attr(node, "transB", 0))
        m, k = (x[1], x[0]) if trans_a else (x[0], x[1])
        n = w[0] if trans_b else w[1]
        return m * k * n
    # MatMul family, numpy semantics
    if len(x) == 1:
        x = [1] + x
    if len(w) == 1:
        w = w + [1]
    batch_a, batch_b = x[:-2], w[:-2]
    nb = max(len(batch_a), len(batch_b))
    batch_a = [1] * (nb - len(batch_a)) + batch_a
    batch_b = [1] * (nb - len(batch_b)) + batch_b
    batch = _prod(max(p, q) for p, q in zip(batch_a, batch_b))
    return batch * x[-2] * x[-1] * w[-1]


def count_onnx_macs(path: Path) -> dict[str, Any]:
    """MACs of one call at batch 1: total, per op type, and any heavy node whose shapes stayed unknown."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    _strip_weights(model)
    _fix_batch(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # keep going with what is known; unknown nodes are reported
        print(f"warning: {path}: shape inference failed ({str(exc).splitlines()[0]})", file=sys.stderr)
    shapes = _shapes(model)
    total, by_op, unknown = 0, {}, []
    for node in model.graph.node:
        if node.op_type not in HEAVY:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.op_type)
            continue
        total += macs
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    return {"macs": total, "by_op": by_op, "unknown_nodes": unknown}


def count_torchscript_macs(bundle_dir: Path) -> dict[str, Any]:
    """TorchScript bundles: ``torch.utils.flop_counter`` over one batch-1 call (FLOPs / 2).

    Gives the same numbers as the ONNX count for FP32 modules (checked on the paper preset). torch's
    dynamic-INT8 Linear (``quantized::linear_dynamic``) is not counted by it, so the orchestrator
    prefers an ONNX bundle of the same configuration when one is benchmarked alongside.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ubdiff_onnx.runtime.manifest import COMPONENTS, read_manifest

    man = read_manifest(bundle_dir)
    L = man.latent_dim
    out = {}
    for name in COMPONENTS:
        module = torch.jit.load(str(man.component_path(name)), map_location="cpu").eval()
        args = (torch.zeros(1, 1, L), torch.tensor([1])) if name == "unet" else (torch.zeros(1, L),)
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            module(*args)
        by_op = {str(k).replace("aten.", ""): int(v) // 2 for k, v in fc.get_flop_counts().get("Global", {}).items()}
        out[name] = {"macs": int(fc.get_total_flops()) // 2, "by_op": by_op, "unknown_nodes": []}
    return out


def count_bundle_macs(bundle_dir: Path) -> dict[str, Any]:
    """Per-component MAC counts at batch 1 for one bundle (ONNX graph or TorchScript module)."""
    from ubdiff_onnx.runtime.manifest import COMPONENTS, read_manifest

    man = read_manifest(bundle_dir)
    if man.precision.startswith("torchscript"):
        return count_torchscript_macs(bundle_dir)
    return {name: count_onnx_macs(man.component_path(name)) for name in COMPONENTS}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ubdiff_onnx.bench.macs BUNDLE_DIR", file=sys.stderr)
        return 2
    try:
        result = count_bundle_macs(Path(args[0]))
    except Exception as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
