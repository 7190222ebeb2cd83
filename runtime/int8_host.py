"""Can this CPU run a bundle's INT8 kernels exactly? (onnxruntime + the standard library only.)

onnxruntime 1.32 multiplies uint8 activations by int8 weights with kernels that differ by CPU:

- ARM (Raspberry Pi 4: NEON; Pi 5: sdot/udot) widens the products and accumulates in 32 bits: exact;
- x86-64 with AVX-512 VNNI (``avx512_vnni``) or AVX-VNNI (``avx_vnni``): VPDPBUSD, 32-bit sums: exact;
- every other x86-64 (AVX2 only; AVX-512 without VNNI, e.g. Skylake-SP, whose AVX512BW kernel uses the
  same instruction; older ones): VPMADDUBSW adds *two* u8·s8 products in a signed 16-bit lane and
  saturates at 32767. With full-range weights a pair reaches 2·255·127 = 64770: a 64-channel QDQ Conv
  of all-255 activations and 127 weights returns 41 instead of 81.28.

A bundle is exact everywhere when 2 · max|activation| · max|weight| ≤ 32767; 7-bit weights
([-64, 64], onnxruntime's ``reduce_range``, the export default) give 32640. The manifest's ``int8``
block records the ranges the bundle assumes (``max_pair_sum``); a QDQ bundle without it predates
the record and is assumed full-range. See docs/int8-cpus.md.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Any, Callable

from ubdiff_onnx.runtime.manifest import BundleError

WEIGHT_RANGES: dict[str, tuple[int, int]] = {"reduced": (-64, 64), "full": (-128, 127)}
"""int8 weight ranges by name; "reduced" = onnxruntime's ``reduce_range`` for int8."""
ACTIVATION_RANGE = (0, 255)
PAIR_SUM_LIMIT = 32767
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
ALLOW_ENV = "UBDIFF_ONNX_ALLOW_INT8_SATURATION"
"""Set to 1 to run a bundle that can saturate on this CPU anyway (with a warning)."""
INT8_PRECISIONS = ("qdq", "int4")


def max_pair_sum(weight_range: str) -> int:
    lo, hi = WEIGHT_RANGES[weight_range]
    return 2 * max(abs(v) for v in ACTIVATION_RANGE) * max(-lo, hi)


@dataclass(frozen=True)
class HostCPU:
    machine: str
    flags: frozenset[str] | None
    """x86 feature flags from /proc/cpuinfo; None where they could not be read."""

    @property
    def is_arm(self) -> bool:
        return self.machine.lower() in ("aarch64", "arm64") or self.machine.lower().startswith("armv")

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i686", "i386", "x86")

    @property
    def family(self) -> str:
        """"arm", "x86-vnni", "x86-avx512-no-vnni", "x86-avx2", "x86-older", "x86-unknown" or "other"."""
        if self.is_arm:
            return "arm"
        if not self.is_x86:
            return "other"
        if self.flags is None:
            return "x86-unknown"
        if any(f in self.flags for f in VNNI_FLAGS):
            return "x86-vnni"
        if "avx512bw" in self.flags:
            return "x86-avx512-no-vnni"
        return "x86-avx2" if "avx2" in self.flags else "x86-older"

    @property
    def pair_sums_saturate(self) -> bool | None:
        """True where u8·s8 pairs are summed in 16 bits; None where it cannot be told."""
        family = self.family
        if family in ("arm", "x86-vnni"):
            return False
        if family in ("other", "x86-unknown"):
            return None
        return True


def read_cpu_flags(cpuinfo: str) -> frozenset[str] | None:
    """The ``flags`` line of an x86 /proc/cpuinfo text (None if there is none)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return None


def host_cpu(cpuinfo_path: str = "/proc/cpuinfo", machine: str | None = None) -> HostCPU:
    machine = machine or platform.machine()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            flags = read_cpu_flags(fh.read())
    except OSError:
        flags = None
    return HostCPU(machine, flags)


def bundle_pair_sum(data: dict[str, Any]) -> int | None:
    """Largest pair sum of a bundle's u8·s8 products (None: not an INT8 ONNX bundle)."""
    if data.get("precision") not in INT8_PRECISIONS:
        return None
    record = data.get("int8")
    if not isinstance(record, dict) or "max_pair_sum" not in record:
        return max_pair_sum("full")  # exported before the record existed: full-range weights
    return int(record["max_pair_sum"])


def saturation_problem(data: dict[str, Any], cpu: HostCPU, where: str = "bundle") -> str | None:
    """One line saying why the bundle ``data`` (a manifest) is not exact on ``cpu``, or None."""
    pair = bundle_pair_sum(data)
    if pair is None or pair <= PAIR_SUM_LIMIT or not cpu.pair_sums_saturate:
        return None
    weights = (data.get("int8") or {}).get("weights", {}).get("range", list(WEIGHT_RANGES["full"]))
    has = "avx512bw" if cpu.family == "x86-avx512-no-vnni" else ("avx2" if cpu.family == "x86-avx2" else "neither")
    return (f"{where}: its INT8 weights {weights} × uint8 activations sum pairs up to {pair} > {PAIR_SUM_LIMIT}, "
            f"which saturates on this CPU: x86-64 without {' or '.join(VNNI_FLAGS)} (has {has}); re-export it with "
            f"`ubdiff-onnx export --format qdq --weight-range reduced` (the default; a QAT checkpoint trained "
            f"with full-range weights needs its qat stages retrained), or run it on ARM or a VNNI x86 CPU")


def check_host(data: dict[str, Any], where: str = "bundle", cpu: HostCPU | None = None, allow: bool | None = None,
               warn: Callable[[str], None] | None = None) -> str | None:
    """Refuse (:class:`BundleError`) a bundle whose INT8 kernels saturate on this CPU; with ``allow``
    (default: ``$UBDIFF_ONNX_ALLOW_INT8_SATURATION`` = 1) warn on stderr and go on. Returns the
    problem (None when the host is fine)."""
    problem = saturation_problem(data, cpu or host_cpu(), where)
    if problem is None:
        return None
    if allow is None:
        allow = os.environ.get(ALLOW_ENV, "") == "1"
    if not allow:
        raise BundleError(f"{problem} (or set {ALLOW_ENV}=1 to run it anyway, with wrong outputs)")
    (warn or (lambda msg: print(msg, file=sys.stderr)))(f"warning: {problem}; running anyway because {ALLOW_ENV}=1")
    return problem
