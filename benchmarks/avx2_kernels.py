"""Run a command with onnxruntime, torch, oneDNN and numpy on their AVX2 kernels, at native speed,
on an x86-64 host that has AVX-512.

Why: docs/int8-cpus.md sets INT8 speed targets for AVX2-only x86 (no AVX-512, no VNNI), and
``qemu-x86_64 -cpu Haswell`` (tests/runtime/cpu_families.py) gives that family's exact numbers but
no time. torch (``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and numpy
(``NPY_DISABLE_CPU_FEATURES``) have switches for their kernel choice; onnxruntime has none. Its MLAS
dispatcher takes AVX-512 kernels when CPUID reports AVX512F *and* XGETBV reports that the OS saves
the ZMM state (XCR0 bits 5-7), so this script copies the installed ``onnxruntime`` package into a
cache folder and, in the copy's extension module, clears XCR0 bits 5-7 right after each XGETBV its
CPU-feature readers use. The copy then runs the code an AVX2-only CPU runs: u8·s8 products summed in
pairs by VPMADDUBSW (16-bit, saturating) and FP32 on AVX2 FMA.

What this is not: an AVX2-only CPU. The silicon (caches, ports, clocks, 256-bit datapaths) is the
host's, so a speed ratio measured this way is a proxy for an AVX2 machine of a similar core, and is
labelled so wherever it is quoted. Every use checks that the copy really runs the AVX2 kernels: the
saturation reproducer (a 64-channel QDQ Conv of 255 × 127) must give AVX2's 41 instead of 81.28,
and a float Conv must give bit for bit what the same onnxruntime gives under ``qemu-x86_64 -cpu
Haswell`` (when qemu-user >= 7.2 is installed).

The byte patterns are those of onnxruntime 1.32's x86-64 Linux wheel; another version whose code
differs fails loudly here rather than measuring the wrong kernels.

Usage (from the repository root)::

    python benchmarks/avx2_kernels.py check
    python benchmarks/avx2_kernels.py run -- python -m ubdiff_onnx bench BUNDLE ... --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ubdiff_onnx.runtime.int8_host import AVX2_ONLY_FLAGS, FLAGS_ENV, QEMU_HASWELL_CPU

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ubdiff-onnx" / "ort-avx2"
XGETBV = bytes.fromhex("0f01d0")
# XGETBV; mov eax, eax (a no-op: XGETBV already zero-extends) -> XGETBV; and al, 0x1f (drop the
# opmask / ZMM-hi / hi-ZMM state bits 5-7). Used by MLAS's platform setup and onnxruntime's CPUIDInfo.
PATCH_AFTER_XGETBV = (bytes.fromhex("0f01d089c0"), bytes.fromhex("0f01d0241f"))
# and r9d, 0xe6 (XCR0 & (YMM|SSE|ZMM state)) -> and r9d, 0x06 within a few hundred bytes after an
# XGETBV: the other CPU-feature reader in the module (its later `cmp r9d, 0xe6` then fails).
PATCH_MASK = (bytes.fromhex("4181e1e6000000"), bytes.fromhex("4181e106000000"))
MASK_WINDOW = 256
ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
       "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
       # what the runtime's INT8 host check (runtime/int8_host.py) should believe: /proc/cpuinfo still says AVX-512
       FLAGS_ENV: AVX2_ONLY_FLAGS}


class PatchError(RuntimeError):
    pass


def extension_module(package: Path) -> Path:
    found = sorted((package / "capi").glob("onnxruntime_pybind11_state*.so"))
    if len(found) != 1:
        raise PatchError(f"{package}/capi: expected one onnxruntime_pybind11_state*.so, found {len(found)}")
    return found[0]


def patch_bytes(data: bytes) -> tuple[bytes, list[str]]:
    """The module with its XCR0 reads masked, and what was changed (offsets)."""
    out = bytearray(data)
    changed = []
    old, new = PATCH_AFTER_XGETBV
    for m in re.finditer(re.escape(old), data):
        out[m.start():m.end()] = new
        changed.append(f"{m.start():#x}: xgetbv; mov eax,eax -> xgetbv; and al,0x1f")
    xgetbvs = [m.start() for m in re.finditer(re.escape(XGETBV), data)]
    old, new = PATCH_MASK
    for m in re.finditer(re.escape(old), data):
        if any(0 < m.start() - x <= MASK_WINDOW for x in xgetbvs):
            out[m.start():m.end()] = new
            changed.append(f"{m.start():#x}: and r9d,0xe6 -> and r9d,0x06")
    if not any("mov eax,eax" in c for c in changed):
        raise PatchError("no `xgetbv; mov eax,eax` in onnxruntime's extension module: this onnxruntime's dispatch code "
                         "differs from 1.32's; the patterns in benchmarks/avx2_kernels.py need updating")
    return bytes(out), changed


def prepare(cache: Path = CACHE) -> Path:
    """A folder to put first on PYTHONPATH whose ``onnxruntime`` dispatches as on AVX2-only x86."""
    import onnxruntime

    source = Path(onnxruntime.__file__).parent
    module = extension_module(source)
    digest = hashlib.sha256(module.read_bytes()).hexdigest()[:16]
    root = cache / f"{onnxruntime.__version__}-{digest}"
    if (root / "patch.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root.parent, prefix=".stage-"))
    try:
        shutil.copytree(source, stage / "onnxruntime", ignore=shutil.ignore_patterns("__pycache__"))
        target = extension_module(stage / "onnxruntime")
        patched, changed = patch_bytes(target.read_bytes())
        target.write_bytes(patched)
        (stage / "patch.json").write_text(json.dumps({"onnxruntime": onnxruntime.__version__, "source": str(source),
                                                      "changed": changed}, indent=2))
        if root.exists():
            shutil.rmtree(root)
        stage.rename(root)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return root


def avx2_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


PROBE = r'''
import json, sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
def session(nodes, inits, cin):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 6, 6])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    return ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
init = lambda a, n: numpy_helper.from_array(a, n)
qdq = session([helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
               helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
               helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
               helper.make_node("Conv", ["xd", "wd"], ["y"]),
               helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
               helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])],
              [init(np.full((1, 64, 1, 1), 127, np.int8), "w"), init(np.full(1, 0.01, np.float32), "ws"),
               init(np.zeros(1, np.int8), "wz"), init(np.array(1 / 255, np.float32), "xs"), init(np.array(0, np.uint8), "xz"),
               init(np.array(0.5, np.float32), "ys"), init(np.array(0, np.uint8), "yz")], 64)
rng = np.random.default_rng(0)
fp32 = session([helper.make_node("Conv", ["x", "w"], ["out"], pads=[1, 1, 1, 1])],
               [init(rng.normal(size=(32, 48, 3, 3)).astype(np.float32), "w")], 48)
sat = float(qdq.run(None, {"x": np.ones((1, 64, 6, 6), np.float32)})[0].max())
conv = fp32.run(None, {"x": rng.normal(size=(1, 48, 6, 6)).astype(np.float32)})[0]
np.save(sys.argv[1], conv)
print(json.dumps({"onnxruntime": ort.__file__, "saturation_reproducer": sat}))
'''


def probe(env: dict[str, str], out: Path, prefix: list[str] | None = None) -> dict:
    script = out.with_suffix(".py")
    script.write_text(PROBE)
    proc = subprocess.run([*(prefix or []), sys.executable, str(script), str(out)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise PatchError(f"probe failed ({' '.join(prefix or ['native'])}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Integer features the patch cannot hide: it clears XCR0's AVX-512 state bits, but AVX-VNNI is VEX-encoded
# (needs only the AVX state) and AMX has its own tile state, so onnxruntime still picks their
# non-saturating kernels. Seen on an Intel Xeon with avx_vnni: the reproducer gave 81.5, not 41.
UNMASKABLE = ("avx_vnni", "amx_int8")


def unmaskable_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The host's integer features this patch cannot switch off (empty: the proxy works here)."""
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in UNMASKABLE if f in flags]


def check(root: Path) -> dict:
    """Prove the copy runs AVX2 kernels; returns the evidence (raises :class:`PatchError` if not)."""
    import numpy as np

    hidden = unmaskable_features()
    if hidden:
        raise PatchError(f"this CPU has {', '.join(hidden)}, which clearing XCR0's AVX-512 bits cannot hide: onnxruntime keeps its "
                         "non-saturating kernels, so this host cannot stand in for an AVX2-only CPU (use one without them, or qemu -cpu Haswell for numbers)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        patched = probe(avx2_env(root), tmp / "patched.npy")
        native = probe(dict(os.environ), tmp / "native.npy")
        result = {"patch": json.loads((root / "patch.json").read_text())["changed"],
                  "patched_onnxruntime": patched["onnxruntime"], "reproducer_patched": patched["saturation_reproducer"],
                  "reproducer_native": native["saturation_reproducer"],
                  "float_conv_patched_vs_native_max_abs": float(np.abs(np.load(tmp / "patched.npy") - np.load(tmp / "native.npy")).max())}
        if not patched["onnxruntime"].startswith(str(root)):
            raise PatchError(f"the child imported {patched['onnxruntime']}, not the patched copy under {root}")
        if patched["saturation_reproducer"] != 41.0:
            raise PatchError(f"saturation reproducer gave {patched['saturation_reproducer']} with the patched copy, "
                             "not AVX2's 41: onnxruntime still takes its AVX-512/VNNI kernels")
        qemu = shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")
        if qemu:
            emulated = probe(avx2_env(root), tmp / "haswell.npy", [qemu, "-cpu", QEMU_HASWELL_CPU])
            same = bool(np.array_equal(np.load(tmp / "patched.npy"), np.load(tmp / "haswell.npy")))
            result.update(reproducer_qemu_haswell=emulated["saturation_reproducer"], float_conv_bitwise_equal_to_qemu_haswell=same)
            if not same or emulated["saturation_reproducer"] != 41.0:
                raise PatchError(f"the patched copy differs from qemu Haswell: {result}")
        else:
            result["qemu_haswell"] = "qemu-x86_64 not installed: float kernels not compared"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="prepare the patched copy and show that it runs the AVX2 kernels")
    run = sub.add_parser("run", help="run a command with every library on its AVX2 kernels")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        root = prepare(args.cache)
        evidence = check(root)
    except PatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.cmd == "check":
        print(json.dumps(evidence, indent=2))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("error: run: give the command after --", file=sys.stderr)
        return 2
    print(f"avx2_kernels: {command[0]} runs with onnxruntime from {root} (reproducer {evidence['reproducer_patched']}), "
          f"{', '.join(f'{k}={v}' for k, v in ENV.items())}", file=sys.stderr)
    os.execvpe(command[0], command, avx2_env(root))


if __name__ == "__main__":
    sys.exit(main())
