"""Replace the U-Net's timestep path by a lookup table (QDQ bundles).

Everything the U-Net computes from ``t`` alone — the sinusoidal embedding, the time MLP and every
ResnetBlock's FiLM projection — has only T possible values. At batch 1 the INT8 U-Net is
dominated by per-node overhead (~6 µs a node on a 2-core x86), and that path is ~150 of its ~1,400
nodes, so it is evaluated once for t = 0 … T-1 and stored as one float16 table [T, N, 1]; the graph
reads it with ``Gather(t) → Cast → Split``. float16 keeps the values to 5e-4 relative (the int8 QGemm
path it replaces quantized them to 1/255 of their range, and QAT trains that path in float), and
the table costs what the time-path weights cost as int8 (paper: 5.1 MB against 5.4 MB).

Only tensors that depend on the *values* of ``t`` are folded; anything derived from its shape (the
batch size) stays in the graph. Where a FiLM scale/shift pair reads a GroupNorm affine (one
BatchNormalization after ``simplify.py``), the table absorbs γ and β too (one node less per block).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ubdiff_onnx.conversion.simplify import consumers, is_affine_batchnorm, live_nodes

TABLE_NAME = "timestep_table"


@dataclass
class TableReport:
    removed_nodes: int
    outputs: int
    table_shape: list[int]
    folded_affines: int = 0

    def to_dict(self) -> dict:
        return {"removed_nodes": self.removed_nodes, "tabulated_tensors": self.outputs, "table_shape": self.table_shape,
                "dtype": "float16", "folded_groupnorm_affines": self.folded_affines}


def _value_dependent(graph, t_name: str) -> tuple[list, set[str]]:
    """Nodes whose outputs depend on the values of ``t`` and on constants only (topological order)."""
    const = {i.name for i in graph.initializer}
    values = {t_name}
    nodes = []
    for node in graph.node:
        ins = [i for i in node.input if i]
        if all(i in const for i in ins):
            const.update(node.output)
        elif node.op_type != "Shape" and all(i in const or i in values for i in ins):
            nodes.append(node)
            values.update(node.output)
    return nodes, values


def _fold_affines_into_film(graph, folded: set[int], arrays: dict[str, np.ndarray]) -> int:
    """``(x·γ + β)·S + T`` → ``x·(γ·S) + (β·S + T)`` where S, T are tabulated FiLM tensors and
    ``x·γ + β`` is a GroupNorm affine (an affine BatchNormalization, see ``simplify.py``): the table
    absorbs γ and β, and the graph loses a node per ResnetBlock's first GroupNorm. ``arrays`` (tensor
    name → [T, C, 1] values) is updated in place; the BatchNormalization is left dead."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer if len(i.dims) <= 1}
    live = [n for n in graph.node if id(n) not in folded]
    readers = consumers(live)
    count = 0
    for bn in live:
        if not is_affine_batchnorm(bn, constants):
            continue
        users = readers.get(bn.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        scale = mul.input[1] if mul.input[0] == bn.output[0] else mul.input[0]
        after = readers.get(mul.output[0], [])
        if scale not in arrays or scale == bn.output[0] or len(readers.get(scale, [])) != 1 or len(after) != 1 or after[0].op_type != "Add":
            continue
        add = after[0]
        shift = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
        if shift not in arrays or shift == mul.output[0] or len(readers.get(shift, [])) != 1:
            continue
        gamma, beta = constants[bn.input[1]][None, :, None], constants[bn.input[2]][None, :, None]
        s, t = arrays[scale], arrays[shift]
        if s.shape != t.shape or s.shape[1] != gamma.shape[1]:
            continue
        arrays[scale], arrays[shift] = gamma * s, beta * s + t
        for k, name in enumerate(mul.input):
            if name == bn.output[0]:
                mul.input[k] = bn.input[0]
        count += 1
    return count


def tabulate_timestep_path_(path: Path, timesteps: int, t_name: str = "t") -> TableReport | None:
    """Rewrite the ONNX file at ``path`` in place; None when the graph has no such path."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    nodes, values = _value_dependent(graph, t_name)
    if not nodes:
        return None
    folded = {id(n) for n in nodes}
    frontier: list[str] = []
    for node in graph.node:
        if id(node) in folded:
            continue
        for name in node.input:
            if name in values and name != t_name and name not in frontier:
                frontier.append(name)
    graph_outputs = {o.name for o in graph.output}
    if not frontier or graph_outputs & values:
        return None

    # Evaluate the frontier for every t with onnxruntime (the same kernels the bundle would use).
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in frontier)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {t_name: np.arange(timesteps, dtype=np.int64)}
    for inp in sess.get_inputs():
        if inp.name != t_name:  # other inputs (x) are not read by the folded nodes; feed zeros
            shape = [timesteps if not isinstance(d, int) else d for d in inp.shape]
            feeds[inp.name] = np.zeros(shape, dtype=np.float32)
    arrays = dict(zip(frontier, sess.run(frontier, feeds)))
    folded_affines = _fold_affines_into_film(graph, folded, arrays)
    arrays = [arrays[name] for name in frontier]
    per_t = [a.reshape(timesteps, -1) for a in arrays]
    shapes = [a.shape[1:] for a in arrays]
    if any(a.shape[0] != timesteps for a in arrays) or any(len(s) != 2 or s[1] != 1 for s in shapes):
        return None  # only the (B, C, 1) FiLM tensors of this U-Net are handled
    table = np.concatenate(per_t, axis=1).astype(np.float16)[:, :, None]  # [T, N, 1]

    gathered, cast = f"{TABLE_NAME}_rows", f"{TABLE_NAME}_rows_f32"
    new_nodes = [
        helper.make_node("Gather", [TABLE_NAME, t_name], [gathered], name=f"{TABLE_NAME}_gather", axis=0),
        helper.make_node("Cast", [gathered], [cast], name=f"{TABLE_NAME}_cast", to=onnx.TensorProto.FLOAT),
        helper.make_node("Split", [cast, f"{TABLE_NAME}_sizes"], frontier, name=f"{TABLE_NAME}_split", axis=1),
    ]
    sizes = np.array([s[0] for s in shapes], dtype=np.int64)
    # Dead now: a folded layer's weight DequantizeLinear, the absorbed affines (they would still run).
    kept = live_nodes(new_nodes + [n for n in graph.node if id(n) not in folded], graph_outputs)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend([numpy_helper.from_array(table, TABLE_NAME), numpy_helper.from_array(sizes, f"{TABLE_NAME}_sizes")])
    used = {i for n in graph.node for i in n.input}
    keep_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    keep_vi = [v for v in graph.value_info if v.name not in values or v.name in frontier]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return TableReport(removed_nodes=len(nodes), outputs=len(frontier), table_shape=list(table.shape),
                       folded_affines=folded_affines)

