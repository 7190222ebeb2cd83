"""INT8 bundles give the same numbers on every onnxruntime kernel family (docs/int8-cpus.md).

Families (``cpu_families.py``): this host natively; x86-64 AVX2 without VNNI (qemu-x86_64 -cpu
Haswell), whose u8·s8 kernel (VPMADDUBSW) sums product pairs in int16 and saturates; emulated
Raspberry Pi 4 / Pi 5. A family that cannot be set up here skips with the reason.

One emulated process per family and test (each spends seconds importing onnxruntime).

1. The saturation reproducer: a 64-channel QDQ Conv, u8 activations 255 (scale 1/255) times int8
   weights 127 (scale 0.01) is 81.28; AVX2 returns 41. With 7-bit weights (64) every family
   returns the exact 40.96 (to one output step).
2. Conv layers quantized by our PTQ code path (``quantize_component``) from weights and inputs this
   test did not design (Student-t weights, outlier input channels; seeded): the default reduced
   range agrees across families within one output quantization step.
3. Each component of the tiny QDQ bundles (PTQ and QAT export), fed the same inputs, agrees
   across families within one quantization step of its output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.cpu_families import FAMILIES, FamilyUnavailable, check_available, launch_family
from tests.runtime.test_arm_emulation import output_tolerance

RUN_SNIPPET = r'''
import numpy as np, onnxruntime as ort
feeds = dict(np.load(ARGS[0]))
out = {}
for i, path in enumerate(ARGS[1:]):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    out[f"m{i}"] = sess.run(None, {n.name: feeds[f"m{i}_{n.name}"] for n in sess.get_inputs()})[0]
np.savez(OUT, **out)
'''

BUNDLE_SNIPPET = r'''
import os
import numpy as np
from ubdiff_onnx.runtime.check import run_components
from ubdiff_onnx.runtime.int8_host import ALLOW_ENV
os.environ.pop(ALLOW_ENV, None)  # whatever the parent had: the runtime's own choice first
inputs = dict(np.load(ARGS[0]))
out = {}
for arg in ARGS[1:]:
    kind, bundle = arg.split("=", 1)
    out.update({f"{kind}.{k}": v for k, v in run_components(bundle, inputs, threads=1).items()})
    if kind == "full":  # the same bundle on the fast u8·s8 kernels, whatever they do on this CPU
        os.environ[ALLOW_ENV] = "1"
        out.update({f"full-fast.{k}": v for k, v in run_components(bundle, inputs, threads=1).items()})
        del os.environ[ALLOW_ENV]
np.savez(OUT, **out)
'''


def available_families() -> tuple[list[str], dict[str, str]]:
    ok, skipped = [], {}
    for family in FAMILIES:
        try:
            check_available(family)
            ok.append(family)
        except FamilyUnavailable as exc:
            skipped[family] = str(exc)
    return ok, skipped


@pytest.fixture(scope="module")
def families():
    ok, skipped = available_families()
    if ok == ["native"]:
        pytest.skip("no emulated kernel family available: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    if skipped:
        print("\nskipped families: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return ok


def run_everywhere(code: str, tmp_path: Path, families: list[str], args: list[str]) -> dict[str, dict[str, np.ndarray]]:
    t0 = time.perf_counter()
    jobs = {f: launch_family(code, tmp_path, f, args) for f in families}
    runs = {f: job.result() for f, job in jobs.items()}
    print(f"\n{len(families)} families in {time.perf_counter() - t0:.1f} s")
    return runs


def qdq_conv(path: Path, weight_q: np.ndarray, weight_scale: float, x_scale: float, y_scale: float) -> Path:
    """x → Q/DQ (u8, zero point 0) → Conv with DQ(int8 weight_q) → Q/DQ (u8, y_scale, zero point 0)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cout, cin = weight_q.shape[:2]
    inits = [numpy_helper.from_array(weight_q.astype(np.int8), "w"),
             numpy_helper.from_array(np.full(cout, weight_scale, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
             numpy_helper.from_array(np.array(x_scale, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(np.array(y_scale, np.float32), "ys"), numpy_helper.from_array(np.array(0, np.uint8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    return path


def _untrusted_conv(tmp_path: Path, seed: int) -> tuple[Path, np.ndarray]:
    """A float Conv2d (96→24, 3×3) with Student-t weights, and inputs with a few outlier channels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_t(3, size=(24, 96, 3, 3)) * 0.05).astype(np.float32)
    b = rng.normal(0, 0.1, 24).astype(np.float32)
    x = np.abs(rng.normal(0, 1, size=(8, 96, 12, 12))).astype(np.float32)
    x[:, rng.choice(96, 5, replace=False)] *= 20
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 96, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = tmp_path / f"conv-{seed}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path, x


def test_reproducer_and_ptq_convs_on_every_family(families, tmp_path):
    """One process per family runs (1) the saturation reproducer and (2) two Conv layers our PTQ
    path quantized (default reduced range) from weights and inputs this test did not design."""
    from ubdiff_onnx.conversion.quantize import QuantizationConfig, int8_extents, quantize_component

    paths = [qdq_conv(tmp_path / "full.onnx", np.full((1, 64, 1, 1), 127), 0.01, 1 / 255, 0.5),
             qdq_conv(tmp_path / "reduced.onnx", np.full((1, 64, 1, 1), 64), 0.01, 1 / 255, 0.5)]
    feeds = {"m0_x": np.ones((1, 64, 4, 4), np.float32), "m1_x": np.ones((1, 64, 4, 4), np.float32)}
    for seed in (0, 1):
        fp32, x = _untrusted_conv(tmp_path, seed)
        out = tmp_path / f"conv-{seed}-qdq.onnx"
        quantize_component(fp32, out, [{"x": x[i:i + 4]} for i in (0, 4)], QuantizationConfig())
        w = int8_extents(out)["weights"]
        assert -64 <= w[0] and w[1] <= 64 and max(-w[0], w[1]) == 64, w  # the reduced range, fully used
        feeds[f"m{len(paths)}_x"] = x
        paths.append(out)
    np.savez(tmp_path / "feeds.npz", **feeds)
    runs = run_everywhere(RUN_SNIPPET, tmp_path, families, [str(tmp_path / "feeds.npz"), *map(str, paths)])

    exact = {"full": 64 * 127 * 0.01, "reduced": 64 * 64 * 0.01}
    for family, out in runs.items():
        full, reduced = float(out["m0"].max()), float(out["m1"].max())
        print(f"reproducer {family}: full-range {full} (exact {exact['full']:.2f}), reduced {reduced} (exact {exact['reduced']:.2f})")
        assert abs(reduced - exact["reduced"]) <= 0.5, (family, reduced)  # one output step
        if family == "haswell":
            assert full == 41.0, f"qemu Haswell did not reproduce the AVX2 saturation (got {full}): not emulating AVX2?"
        elif family != "native":
            assert abs(full - exact["full"]) <= 0.5, (family, full)
    for i, path in enumerate(paths[2:], start=2):
        step = output_tolerance(path, "y")
        for family in families:
            diff = float(np.max(np.abs(runs[family][f"m{i}"] - runs["native"][f"m{i}"])))
            print(f"{path.name} {family} vs native: {diff:.3g} (one step {step:.3g})")
            assert diff <= step * 1.0001, (path.name, family, diff, step)


def component_inputs(latent_dim: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = np.clip(rng.normal(0, 0.6, (3, latent_dim)), -1, 1).astype(np.float32)
    return {"unet.x": rng.standard_normal((4, 1, latent_dim)).astype(np.float32),
            "unet.t": np.array([0, 40, 128, 255], np.int64),
            "velocity_decoder.latent": latent, "seismic_decoder.latent": latent}


@pytest.fixture(scope="module")
def tiny_full_range_bundle(tmp_path_factory, tiny_qdq_bundle) -> Path:
    """The 7-bit PTQ bundle with every int8 weight doubled (clipped to 127) and its scale halved: the
    same layer, now using the full int8 range like a ``--weight-range full`` export, and without the
    ``int8`` record, as a bundle from before it (the runtime assumes full range). Made in a second
    instead of another export."""
    import hashlib
    import shutil

    import onnx
    from onnx import numpy_helper

    out = tmp_path_factory.mktemp("bundles") / "tiny-qdq-full"
    shutil.copytree(tiny_qdq_bundle, out)
    man = json.loads((out / "manifest.json").read_text())
    for comp in man["components"].values():
        path = out / comp["path"]
        model = onnx.load(str(path))
        inits = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            w = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
            if w is None or w.data_type != onnx.TensorProto.INT8 or len(node.input) < 2 or node.input[1] not in inits:
                continue
            q = numpy_helper.to_array(w).astype(np.int32)
            w.CopyFrom(numpy_helper.from_array(np.clip(q * 2, -128, 127).astype(np.int8), w.name))
            scale = inits[node.input[1]]
            scale.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(scale) / 2).astype(np.float32), scale.name))
        onnx.save(model, str(path))
        comp["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        comp["bytes"] = path.stat().st_size
    man.pop("int8")
    (out / "manifest.json").write_text(json.dumps(man))
    return out


def test_tiny_bundle_components_agree_across_families(families, tiny_qdq_bundle, tiny_qat_bundle, tiny_full_range_bundle, tmp_path):
    """7-bit PTQ and QAT bundles, and a full-range one run the way the runtime runs it (on a CPU
    whose u8·s8 kernels saturate: onnxruntime's u8·u8 kernels), agree with native within one output
    step on every family; the full-range bundle forced onto the fast kernels does not on Haswell."""
    bundles = {"ptq": tiny_qdq_bundle, "qat": tiny_qat_bundle, "full": tiny_full_range_bundle}
    manifests = {k: json.loads((b / "manifest.json").read_text()) for k, b in bundles.items()}
    for kind in ("ptq", "qat"):
        man = manifests[kind]
        assert man["int8"]["max_pair_sum"] <= 32767 and man["int8"]["weights"]["range"] == [-64, 64], kind
    assert "int8" not in manifests["full"]  # legacy: full range assumed
    np.savez(tmp_path / "in.npz", **component_inputs(manifests["ptq"]["latent_dim"]))
    runs = run_everywhere(BUNDLE_SNIPPET, tmp_path, families, [str(tmp_path / "in.npz"), *(f"{k}={b}" for k, b in bundles.items())])
    report = []
    fast_steps: dict[str, float] = {}
    for kind, bundle in bundles.items():
        for name, comp in manifests[kind]["components"].items():
            output = next(iter(comp["outputs"]))
            step = output_tolerance(bundle / comp["path"], output)
            key = f"{kind}.{name}.{output}"
            for family in families:
                diff = float(np.max(np.abs(runs[family][key].astype(np.float64) - runs["native"][key])))
                report.append(f"{key} {family} {diff / step:.2f} steps")
                assert diff <= step * 1.0001, f"{key} on {family} differs from native by {diff:.3g} > one step {step:.3g}"
                if kind == "full":
                    fast = float(np.max(np.abs(runs[family][f"full-fast.{name}.{output}"].astype(np.float64) - runs["native"][key])))
                    fast_steps[f"{family} {name}"] = fast / step
    print("\n" + "; ".join(report))
    print("full-range bundle on the fast u8·s8 kernels, steps from native: " + ", ".join(f"{k} {v:.1f}" for k, v in fast_steps.items()))
    if "haswell" in families:  # proof that the u8·u8 config is what makes the AVX2 run exact
        assert max(v for k, v in fast_steps.items() if k.startswith("haswell")) > 2, fast_steps
