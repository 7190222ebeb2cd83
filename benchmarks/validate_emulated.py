"""Re-run an exported bundle's validation with onnxruntime on another INT8 kernel family.

``export`` validates on the export host's kernels. This runs the same check (same inputs, same torch
reference, same thresholds, U-Net judged on x̂0) with the bundle executed under an emulated CPU:
``haswell`` = this host's Python under ``qemu-x86_64 -cpu Haswell`` (x86-64 AVX2 without VNNI, whose
u8·s8 kernels saturate), or ``native``. Emulation gives numbers, never speed.

Usage: python benchmarks/validate_emulated.py CHECKPOINT BUNDLE [--family haswell|native] [--ptq]
(``--ptq``: the bundle is post-training quantized, judged against the float model at 0.98; default:
a QAT bundle against its fake-quant model at 0.995). Prints one line per output and exits 1 on a failure.
``UBDIFF_ONNX_ALLOW_INT8_SATURATION=1`` is set for the emulated process: under qemu-user the host
check reads the host's /proc/cpuinfo, and this script wants the numbers either way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint
from ubdiff_onnx.runtime.int8_host import QEMU_HASWELL_CPU
from ubdiff_onnx.conversion.validate import (
    PTQ_MIN_COSINE,
    QAT_MIN_COSINE,
    compare,
    torch_reference,
    validation_inputs,
    with_denoised,
)

QEMU_HASWELL = ["qemu-x86_64", "-cpu", QEMU_HASWELL_CPU]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--family", choices=("haswell", "native"), default="haswell")
    parser.add_argument("--ptq", action="store_true")
    a = parser.parse_args()
    ckpt_path, bundle, family, ptq = a.checkpoint, a.bundle, a.family, a.ptq
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.qat and not ptq:
        from ubdiff_onnx.qat.state import model_from_checkpoint

        model = model_from_checkpoint(ckpt, source=str(ckpt_path))
    else:
        model = build_model(ckpt, source=str(ckpt_path)).eval()
    inputs = validation_inputs(model)
    with tempfile.TemporaryDirectory(prefix="ubdiff-emulated-") as tmp:
        fin, fout = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(fin, **inputs)
        argv = [sys.executable, "-m", "ubdiff_onnx.runtime.check", str(bundle), str(fin), str(fout)]
        if family == "haswell":
            argv = QEMU_HASWELL + argv
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "UBDIFF_ONNX_ALLOW_INT8_SATURATION": "1"})
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 2
        with np.load(fout) as d:
            got = {k: d[k] for k in d.files if k != "torch_loaded"}
    ref = torch_reference(model, inputs)
    ref, got = with_denoised(model, ref, inputs), with_denoised(model, got, inputs)
    limit = PTQ_MIN_COSINE if ptq or not ckpt.qat else QAT_MIN_COSINE
    checks = compare(ref, got, limit, by_cosine=True)
    failed = False
    print(f"{bundle} on {family} ({time.perf_counter() - t0:.0f} s emulated run), against "
          f"{'the float model' if limit == PTQ_MIN_COSINE else 'its fake-quant model'}, limit cosine {limit}:")
    for c in checks:
        gate = c.output != "model_output"
        failed |= gate and not c.ok
        print(f"  {c.component}.{c.output}: cosine {c.cosine:.4f} max abs diff {c.max_abs_diff:.3g}"
              f"{'' if gate else ' (reported only)'}{'' if c.ok or not gate else '  FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
