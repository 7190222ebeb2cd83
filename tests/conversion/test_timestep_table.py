"""The U-Net's timestep path folded into a float16 lookup table gives the same step (up to float16)."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort

from ubdiff_onnx.conversion.timestep_table import TABLE_NAME, tabulate_timestep_path_
from ubdiff_onnx.runtime.manifest import read_manifest


def _run(path, x, t):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "t": t})[0]


def test_table_replaces_the_time_path_and_keeps_the_output(tmp_path, tiny_fp32_bundle):
    src = read_manifest(tiny_fp32_bundle).component_path("unet")
    dst = tmp_path / "unet.onnx"
    shutil.copy(src, dst)
    report = tabulate_timestep_path_(dst, 256)
    assert report is not None and report.removed_nodes > 20 and report.table_shape[0] == 256
    graph = onnx.load(str(dst)).graph
    ops = {n.op_type for n in graph.node}
    assert "Gemm" not in ops and "Sin" not in ops  # the time MLP and FiLM projections are gone
    table = next(i for i in graph.initializer if i.name == TABLE_NAME)
    assert table.data_type == onnx.TensorProto.FLOAT16
    rng = np.random.default_rng(0)
    for batch in (1, 5):  # the batch stays dynamic
        x = rng.standard_normal((batch, 1, 32)).astype(np.float32)
        t = rng.integers(0, 256, batch)
        a, b = _run(src, x, t), _run(dst, x, t)
        assert np.abs(a - b).max() <= 2e-3 * np.abs(a).max()  # float16 table entries


def test_qdq_unet_has_no_time_gemms_and_runs_at_extended_level(tiny_qat_bundle):
    man = read_manifest(tiny_qat_bundle)
    assert man.component("unet")["graph_optimization"] == "extended"
    assert man.data["quantization"]["timestep_table"]["removed_nodes"] > 20
    assert "QGemm" not in man.data["quantization"]["op_histogram"]["unet"]
