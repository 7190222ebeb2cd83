"""What machine the benchmark ran on, and the peak arithmetic rate it is compared against.

Peak derivation (per physical core, per cycle; documented in ``benchmarks/README.md``):

* vector width W = 512 bits with ``avx512f``, 256 with ``avx2``, else 128 (SSE);
* FP32: ``fma`` → 2 FMA pipes × W/32 lanes (one MAC per lane per cycle). Every x86 core with
  AVX2+FMA since Haswell issues two FMAs per cycle; AVX-512 server Xeons (Skylake-SP Gold/Platinum
  and later) and Zen 5 have two 512-bit FMA pipes. Without FMA: 1 mul + 1 add pipe → W/32.
* INT8 (u8×s8 → s32, what onnxruntime's QLinearConv/QGemm/MatMulInteger kernels use):
  ``avx512_vnni`` → VPDPBUSD zmm, 64 MACs per instruction × 2 pipes = 128; ``avx_vnni`` (256-bit
  only) → 64; AVX2 without VNNI → VPMADDUBSW + VPMADDWD + VPADDD, three instructions per 32 MACs
  on two pipes ≈ W/8 × 2 / 3 (≈ 21 at 256 bits); otherwise 2 × the FP32 rate.
* ``amx_int8`` is reported (onnxruntime can use AMX tiles for INT8 GEMM) but not folded into the
  peak, which would then be ~1000 MACs/cycle and mostly unreachable at batch 1.
* clock: ``CPU max MHz`` from ``lscpu`` when the kernel exposes cpufreq, else the highest
  ``cpu MHz`` in ``/proc/cpuinfo`` (on a VM that is usually the nominal/TSC clock; turbo, if any,
  would make the true peak higher and the achieved fraction lower).
* peak for T threads = per-core rate × clock × min(T, physical cores).

The pipe counts are assumptions from the vendors' optimisation manuals, not measured here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm")


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    procs, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                procs.append(cur)
                cur = {}
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            cur[k.strip()] = v.strip()
    if cur:
        procs.append(cur)
    return procs


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, flags of interest, cores, clock and the derived peak rates (no heavy imports)."""
    procs = _cpuinfo()
    lscpu = _lscpu()
    first = procs[0] if procs else {}
    flags = set((first.get("flags") or first.get("Features") or lscpu.get("Flags", "")).split())
    model = first.get("model name") or lscpu.get("Model name") or platform.processor() or platform.machine()
    logical = os.cpu_count() or 1
    try:
        physical = int(lscpu["Core(s) per socket"]) * int(lscpu.get("Socket(s)", "1"))
    except (KeyError, ValueError):
        physical = len({(p.get("physical id"), p.get("core id")) for p in procs}) or logical
    mhz_source, mhz = None, None
    if lscpu.get("CPU max MHz"):
        mhz, mhz_source = float(lscpu["CPU max MHz"]), "lscpu CPU max MHz"
    else:
        vals = [float(p["cpu MHz"]) for p in procs if re.match(r"^[0-9.]+$", p.get("cpu MHz", ""))]
        if vals:
            mhz, mhz_source = max(vals), "/proc/cpuinfo cpu MHz (nominal on a VM; turbo unknown)"
    peak = derive_peak(flags, mhz, physical)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model,
        "vendor": first.get("vendor_id") or lscpu.get("Vendor ID"),
        "cpu_family_model": f"{first.get('cpu family', '?')}/{first.get('model', '?')}",
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "architecture": platform.machine(),
        "logical_cpus": logical,
        "physical_cores": physical,
        "affinity": affinity,
        "mhz": mhz,
        "mhz_source": mhz_source,
        "flags_of_interest": {f: (f in flags) for f in FLAGS_OF_INTEREST},
        "caches": {k: lscpu[k] for k in ("L1d cache", "L2 cache", "L3 cache") if k in lscpu},
        "memory_total_bytes": _mem_total(),
        "peak": peak,
        "os": platform.platform(),
        "os_release": _os_release(),
        "board": _board(),
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in ("ubdiff-onnx", "onnxruntime", "numpy", "torch", "onnx")},
    }


def _board() -> str | None:
    """The board's name where the firmware tells it (``Raspberry Pi 4 Model B Rev 1.4``): a Pi
    result must say which board made it."""
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def derive_peak(flags: set[str], mhz: float | None, physical_cores: int) -> dict[str, Any]:
    """Per-core MACs/cycle for FP32 and INT8 from the CPU flags, and GMAC/s per thread count."""
    width = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    if "fma" in flags or "asimd" in flags:
        fp32 = 2 * width // 32
        fp32_how = f"2 FMA pipes x {width // 32} fp32 lanes ({width}-bit)"
    else:
        fp32 = width // 32
        fp32_how = f"1 mul + 1 add pipe x {width // 32} lanes ({width}-bit)"
    if "avx512_vnni" in flags and width == 512:
        int8, int8_how = 128, "AVX512-VNNI VPDPBUSD zmm: 64 u8xs8 MACs x 2 pipes"
    elif "avx_vnni" in flags or "avx512_vnni" in flags:
        int8, int8_how = 64, "AVX-VNNI VPDPBUSD ymm: 32 u8xs8 MACs x 2 pipes"
    elif width >= 256:
        int8 = round(width // 8 * 2 / 3)
        int8_how = f"{'AVX-512' if width == 512 else 'AVX2'} VPMADDUBSW+VPMADDWD+VPADDD: {width // 8} MACs per 3 instr x 2 pipes"
    else:
        int8, int8_how = 2 * fp32, "2 x the fp32 rate (no VNNI / wide int8 dot products)"
    ghz = (mhz or 0.0) / 1000.0
    return {
        "vector_bits": width,
        "fp32_macs_per_cycle_per_core": fp32,
        "fp32_how": fp32_how,
        "int8_macs_per_cycle_per_core": int8,
        "int8_how": int8_how,
        "amx_int8_present_not_counted": "amx_int8" in flags,
        "ghz": ghz,
        "physical_cores": physical_cores,
        "fp32_gmacs_per_core": fp32 * ghz,
        "int8_gmacs_per_core": int8 * ghz,
    }


def peak_gmacs(peak: dict[str, Any], arithmetic: str, threads: int) -> float | None:
    """The peak GMAC/s for ``arithmetic`` ('fp32'|'int8') at ``threads`` intra-op threads."""
    per_core = peak.get(f"{arithmetic}_gmacs_per_core") or 0.0
    if per_core <= 0:
        return None
    return per_core * max(1, min(threads, int(peak.get("physical_cores") or 1)))


# Which arithmetic the heavy ops of each precision run in (what "% of peak" is measured against).
PRECISION_ARITHMETIC = {"fp32": "fp32", "torchscript": "fp32", "qdq": "int8", "int4": "int8", "torchscript-int8": "int8"}
