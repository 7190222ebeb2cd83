"""Exporter leftovers removed from every exported ONNX graph (FP32 and QDQ bundles alike).

At batch 1 onnxruntime's CPU provider spends a few µs per node whatever the node computes, and the
U-Net runs ~800 of them per step, so nodes that only re-derive a static shape or split one
elementwise pass into two cost real time (paper QDQ U-Net: 837 → 663 nodes after onnxruntime's
optimisation, step −8–9 %, with the timestep table's affine fold).
Each rewrite keeps the values (the constant folds round once instead of twice) and keeps the names
of the tensors other code refers to (QAT scale overrides, the timestep table):

* ``Reshape(x, Shape(y))`` where ``y`` is static except its leading batch axis and ``x`` has the same
  batch axis → ``Reshape(x, [0, d1, …])``. (``F.group_norm`` restores its input's shape this way; in a
  QDQ graph the ``Shape`` even reads a duplicated DequantizeLinear, a whole dequantize for nothing.)
* ``Expand`` whose readers are broadcasting elementwise ops that already see the expanded shape
  through their other input (``F.normalize``'s ``expand_as``) → dropped.
* ``Mul(Mul(x, c1), c2)`` with constants → ``Mul(x, c1·c2)`` (RMSNorm's gain × √dim).
* ``Add(Mul(x, γ), β)`` with per-channel constants on an ``[N, C, L]`` tensor (GroupNorm's affine)
  → one ``BatchNormalization`` with mean 0, variance 1 and ε = 1e-30, which computes ``x·γ + β``
  exactly (1 + 1e-30 rounds to 1 in float32) in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

AFFINE_EPSILON = 1e-30
"""ε of the BatchNormalization nodes that stand for a plain per-channel affine (see module doc)."""
_BROADCAST_OPS = {"Add", "Sub", "Mul", "Div"}


@dataclass
class SimplifyReport:
    static_reshapes: int = 0
    dropped_expands: int = 0
    folded_muls: int = 0
    affine_batchnorms: int = 0
    removed_nodes: int = 0


def _shapes(model) -> dict[str, list]:
    """Tensor name → dims (int, symbolic name, or None) from ONNX shape inference, run on a copy
    whose large weights are declared as inputs (their values are not needed; a 1 GB copy is)."""
    from onnx import helper, shape_inference

    g = model.graph
    small = [i for i in g.initializer if _small(i)]
    inputs = {i.name for i in g.input}
    declared = [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in g.initializer
                if not _small(i) and i.name not in inputs]
    light = helper.make_model(helper.make_graph(g.node, g.name, [*g.input, *declared], g.output, small, value_info=g.value_info),
                              opset_imports=model.opset_import, ir_version=model.ir_version)
    inferred = shape_inference.infer_shapes(light)
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
    return out


def consumers(nodes) -> dict[str, list]:
    """Tensor name → the nodes (of ``nodes``) that read it."""
    readers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            if name:
                readers.setdefault(name, []).append(node)
    return readers


def live_nodes(nodes: list, outputs: set[str]) -> list:
    """``nodes`` (in topological order) without those no name in ``outputs`` depends on."""
    needed, live = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    return live[::-1]


def _unique(graph, base: str) -> str:
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def is_affine_batchnorm(node, constants: dict[str, np.ndarray]) -> bool:
    """True for a BatchNormalization this module made: mean 0, variance 1, ε = ``AFFINE_EPSILON``
    (as stored: a float32 attribute)."""
    if node.op_type != "BatchNormalization" or len(node.input) != 5 or len(node.output) != 1:
        return False
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    mean, var = constants.get(node.input[3]), constants.get(node.input[4])
    return eps <= float(np.float32(AFFINE_EPSILON)) and mean is not None and var is not None and not mean.any() and bool((var == 1).all())


def _static_reshapes(graph, shapes, report: SimplifyReport) -> None:
    from onnx import numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in producer or producer[node.input[1]].op_type != "Shape":
            continue
        shape_node = producer[node.input[1]]
        if any(a.name == "end" or (a.name == "start" and a.i != 0) for a in shape_node.attribute):
            continue
        target, source = shapes.get(shape_node.input[0]), shapes.get(node.input[0])
        if not target or not source or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        batch = target[0]
        if isinstance(batch, int) or batch is None or source[0] != batch:
            continue
        if not all(isinstance(d, int) and d > 0 for d in target[1:]):
            continue
        name = _unique(graph, f"{node.input[1]}_static")
        graph.initializer.append(numpy_helper.from_array(np.array([0, *target[1:]], dtype=np.int64), name))
        node.input[1] = name
        report.static_reshapes += 1


def _drop_expands(graph, shapes, report: SimplifyReport) -> None:
    readers = consumers(graph.node)
    for node in graph.node:
        if node.op_type != "Expand":
            continue
        out = node.output[0]
        users = readers.get(out, [])
        full = shapes.get(out)
        if not users or full is None or None in full:
            continue
        ok = True
        for user in users:
            if user.op_type not in _BROADCAST_OPS or list(user.input).count(out) != 1:
                ok = False
                break
            other = user.input[1] if user.input[0] == out else user.input[0]
            if shapes.get(other) != full:
                ok = False
                break
        if not ok:
            continue
        for user in users:
            for k, name in enumerate(user.input):
                if name == out:
                    user.input[k] = node.input[0]
        report.dropped_expands += 1


def _fold_mul_chains(graph, constants, outputs: set[str], report: SimplifyReport) -> None:
    from onnx import numpy_helper

    readers = consumers(graph.node)
    for node in graph.node:
        if node.op_type != "Mul" or node.input[1] not in constants or node.output[0] in outputs:
            continue
        users = readers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul" or users[0].input[0] != node.output[0] or users[0].input[1] not in constants:
            continue
        nxt = users[0]
        a, b = constants[node.input[1]], constants[nxt.input[1]]
        folded = np.asarray(a * b, dtype=np.result_type(a, b))
        if folded.ndim > max(a.ndim, b.ndim) or folded.dtype != a.dtype:
            continue
        name = _unique(graph, f"{nxt.input[1]}_folded")
        graph.initializer.append(numpy_helper.from_array(folded, name))
        constants[name] = folded
        nxt.input[0], nxt.input[1] = node.input[0], name  # ``node`` has no reader left: _drop_dead removes it
        readers = consumers(graph.node)
        report.folded_muls += 1


def _affine_batchnorms(graph, constants, shapes, outputs: set[str], report: SimplifyReport) -> None:
    from onnx import helper, numpy_helper

    readers = consumers(graph.node)
    made: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    replaced: dict[str, object] = {}  # by output name (unique in a graph), not by proto wrapper
    for node in graph.node:
        if node.op_type != "Mul" or node.input[1] not in constants or node.output[0] in outputs:
            continue
        x_shape = shapes.get(node.input[0])
        if not x_shape or len(x_shape) != 3 or not isinstance(x_shape[1], int):
            continue
        channels = x_shape[1]
        users = readers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add" or users[0].input[0] != node.output[0] or users[0].input[1] not in constants:
            continue
        add = users[0]
        gamma, beta = constants[node.input[1]], constants[add.input[1]]
        if gamma.dtype != np.float32 or beta.dtype != np.float32:
            continue
        if gamma.shape not in ((channels, 1), (1, channels, 1)) or beta.shape not in ((channels, 1), (1, channels, 1)):
            continue
        key = (node.input[1], add.input[1])
        if key not in made:
            names = tuple(_unique(graph, f"{add.output[0]}_bn_{what}") for what in ("scale", "bias", "mean", "var"))
            arrays = (gamma.reshape(-1), beta.reshape(-1), np.zeros(channels, np.float32), np.ones(channels, np.float32))
            graph.initializer.extend(numpy_helper.from_array(a, n) for a, n in zip(arrays, names))
            made[key] = names
        bn = helper.make_node("BatchNormalization", [node.input[0], *made[key]], [add.output[0]],
                              name=_unique(graph, f"{add.name or 'affine'}_bn"), epsilon=AFFINE_EPSILON)
        replaced[node.output[0]] = bn
        replaced[add.output[0]] = None
        report.affine_batchnorms += 1
    if replaced:
        kept = [replaced.get(n.output[0], n) if len(n.output) == 1 else n for n in graph.node]
        del graph.node[:]
        graph.node.extend(n for n in kept if n is not None)


def _drop_dead(graph) -> None:
    if any(a.type in (a.GRAPH, a.GRAPHS) for n in graph.node for a in n.attribute):
        return  # subgraphs may read outer names: not worth following for these exports
    live = live_nodes(list(graph.node), {o.name for o in graph.output})
    del graph.node[:]
    graph.node.extend(live)
    needed = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _small(init) -> bool:
    """Constants the rewrites may read: the per-channel ones, not the weights (no 1 GB copies)."""
    return int(np.prod(init.dims, dtype=np.int64)) <= 65536


def simplify_model(model) -> SimplifyReport:
    """Apply the rewrites of the module docstring to ``model`` (an ``onnx.ModelProto``) in place."""
    from onnx import numpy_helper

    graph = model.graph
    report = SimplifyReport()
    before = len(graph.node)
    shapes = _shapes(model)
    outputs = {o.name for o in graph.output}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer if _small(i)}
    _static_reshapes(graph, shapes, report)
    _drop_expands(graph, shapes, report)
    _fold_mul_chains(graph, constants, outputs, report)
    shapes = _shapes(model)  # static reshapes give their outputs known shapes
    _affine_batchnorms(graph, constants, shapes, outputs, report)
    _drop_dead(graph)
    report.removed_nodes = before - len(graph.node)
    return report


def simplify_file_(path: Path) -> SimplifyReport:
    """Simplify the ONNX file at ``path`` in place. A model kept with external data (> 2 GB, which
    no UB-Diff component is) is left as it is."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer):
        return SimplifyReport()
    report = simplify_model(model)
    if report.removed_nodes or report.static_reshapes:
        onnx.save(model, str(path))
        onnx.checker.check_model(str(path))
    return report
