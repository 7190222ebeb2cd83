"""Which integer kernels onnxruntime runs on the emulated Pi 4 and Pi 5, per component.

A Pi 5 (Cortex-A76) has the ARMv8.2 dot-product instructions and onnxruntime's INT8 kernels use
them; a Pi 4 (Cortex-A72, ARMv8.0) has none, so INT8 there runs plain NEON multiply-long kernels and
saves weight bandwidth rather than arithmetic. This test runs each component of the tiny QDQ bundle
once per profile with qemu's translation log (``QEMU_LOG=in_asm``) and counts the SDOT/UDOT
instructions translated: a Pi 5 run that stops using them, or a Pi 4 run that starts (it would die
with SIGILL on a real board), fails. qemu-user has no instruction-count plugin here, so this is a
count of translated dot-product sites, not of executed instructions; emulation never gives time.
"""

from __future__ import annotations

import json

import numpy as np

from tests.runtime.arm_emulation import dot_product_instructions, launch

COMPONENT_SNIPPET = r'''
import json
import numpy as np
from ubdiff_onnx.runtime.manifest import read_manifest
from ubdiff_onnx.runtime.sessions import make_session

bundle, name = ARGS
man = read_manifest(bundle)
sess = make_session(man.component_path(name), threads=1, optimization=man.graph_optimization(name))
rng = np.random.default_rng(0)
feeds = {}
for i in sess.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    feeds[i.name] = rng.integers(0, 256, shape).astype(np.int64) if "int64" in i.type else rng.standard_normal(shape).astype(np.float32)
out = sess.run(None, feeds)[0]
np.savez(OUT, out=out)
'''


def test_int8_kernels_use_dot_product_on_pi5_only(arm_env, tiny_qdq_bundle, tmp_path):
    components = list(json.loads((tiny_qdq_bundle / "manifest.json").read_text())["components"])
    counts: dict[tuple[str, str], int] = {}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for name in components:
        jobs = {}
        for profile in ("pi4", "pi5"):
            work = tmp_path / f"{name}-{profile}"
            work.mkdir()
            log = work / "in_asm.log"
            jobs[profile] = (launch(COMPONENT_SNIPPET, work, profile=profile, arm=arm_env, args=[str(tiny_qdq_bundle), name],
                                    qemu_env={"QEMU_LOG": "in_asm", "QEMU_LOG_FILENAME": str(log)}), log)
        for profile, (job, log) in jobs.items():
            outputs[name, profile] = job.result()["out"]
            counts[name, profile] = dot_product_instructions(log)
            log.unlink()
    print("\nSDOT/UDOT instructions translated (tiny QDQ bundle): "
          + "; ".join(f"{n} {p} {c}" for (n, p), c in counts.items()))
    for name in components:
        assert counts[name, "pi4"] == 0, f"{name}: the Pi 4 profile ran dot-product instructions it does not have"
        # pi4 and pi5 INT8 kernels must agree exactly on the same input (integer arithmetic)
        np.testing.assert_array_equal(outputs[name, "pi4"], outputs[name, "pi5"], err_msg=name)
    for name in components:  # QLinearConv, QGemm and QLinearMatMul all have dotprod kernels on ARM64
        assert counts[name, "pi5"] > 0, f"{name}: the Pi 5 profile no longer uses dot-product INT8 kernels"
