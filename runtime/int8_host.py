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
the record and is assumed full-range.

A full-range bundle on a CPU whose kernels saturate (or whose flags cannot be read) is not refused:
its sessions get onnxruntime's ``session.x64quantprecision = 1``, whose graph transformer turns the
int8 weights into uint8 so that the u8·u8 kernels run, which widen to 16 bits before multiplying
and are exact (measured: the full-range paper bundle on onnxruntime's AVX2 kernels then gives the
VNNI host's outputs bit for bit; without it, 51 output steps off). Those kernels are slower than
the u8·s8 ones a 7-bit bundle gets, so the runtime says so in one line. See docs/int8-cpus.md.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Any, Callable


WEIGHT_RANGES: dict[str, tuple[int, int]] = {"reduced": (-64, 64), "full": (-128, 127)}
"""int8 weight ranges by name; "reduced" = onnxruntime's ``reduce_range`` for int8."""
ACTIVATION_RANGE = (0, 255)
PAIR_SUM_LIMIT = 32767
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
ALLOW_ENV = "UBDIFF_ONNX_ALLOW_INT8_SATURATION"
"""Set to 1 to run a full-range bundle on the fast, saturating u8·s8 kernels anyway (wrong outputs; for measuring)."""
FLAGS_ENV = "UBDIFF_ONNX_CPU_FLAGS"
"""x86 feature flags to assume instead of /proc/cpuinfo's, space-separated: under ``qemu-x86_64 -cpu
Haswell`` the emulated process still reads the host's /proc/cpuinfo, and ``benchmarks/avx2_kernels.py``
hides AVX-512 from onnxruntime only."""
AVX2_ONLY_FLAGS = "sse4_1 sse4_2 avx avx2 fma f16c bmi2"
"""The flags of an AVX2-only x86 (Haswell … Zen 3): what ``$UBDIFF_ONNX_CPU_FLAGS`` says where one is emulated."""
QEMU_HASWELL_CPU = "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"
"""``qemu-x86_64 -cpu`` model of that CPU: Haswell without the system features qemu-user cannot emulate
(TSX, PCID, x2APIC: it warns for each), i.e. the ISA of an AVX2-only CPU."""
HIGH_PRECISION_CONFIG = {"session.x64quantprecision": "1"}
"""onnxruntime session config that makes full-range u8·s8 QDQ graphs exact on x86 without VNNI."""
INT8_PRECISIONS = ("qdq", "int4")


def max_pair_sum(weight_range: str) -> int:
    lo, hi = WEIGHT_RANGES[weight_range]
    return 2 * max(abs(v) for v in ACTIVATION_RANGE) * max(-lo, hi)


@dataclass(frozen=True)
class HostCPU:
    machine: str
    flags: frozenset[str] | None
    """x86 feature flags from /proc/cpuinfo (or ``$UBDIFF_ONNX_CPU_FLAGS``); None where they could not be read."""

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
    if os.environ.get(FLAGS_ENV, "").strip():
        return HostCPU(machine, frozenset(os.environ[FLAGS_ENV].split()))
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
    """Why the bundle ``data`` (a manifest) is not exact on ``cpu``'s fast u8·s8 kernels, or None.

    None also for CPUs that are neither x86 nor ARM (``session.x64quantprecision`` is an x86 option)."""
    pair = bundle_pair_sum(data)
    if pair is None or pair <= PAIR_SUM_LIMIT or cpu.pair_sums_saturate is False or cpu.family == "other":
        return None
    weights = (data.get("int8") or {}).get("weights", {}).get("range", list(WEIGHT_RANGES["full"]))
    if cpu.family == "x86-unknown":
        cpu_says = f"this x86-64 CPU's flags could not be read, so it may lack {' or '.join(VNNI_FLAGS)}"
    else:
        has = "avx512bw" if cpu.family == "x86-avx512-no-vnni" else ("avx2" if cpu.family == "x86-avx2" else "neither")
        cpu_says = f"x86-64 without {' or '.join(VNNI_FLAGS)} (has {has})"
    return (f"{where}: its INT8 weights {weights} × uint8 activations sum pairs up to {pair} > {PAIR_SUM_LIMIT}, which "
            f"onnxruntime's u8·s8 kernels saturate on this CPU ({cpu_says})")


def session_config(data: dict[str, Any], where: str = "bundle", cpu: HostCPU | None = None, allow: bool | None = None,
                   say: Callable[[str], None] | None = None) -> dict[str, str]:
    """The onnxruntime session config entries that make the bundle ``data`` (a manifest) exact on
    ``cpu`` (default: this host): ``{}`` where its kernels are exact, else
    :data:`HIGH_PRECISION_CONFIG`, said in one line on stderr (``say``) with the export option
    that gets the fast kernels back. With ``allow`` (default: ``$UBDIFF_ONNX_ALLOW_INT8_SATURATION``
    = 1) it warns and returns ``{}``: the fast kernels, wrong outputs."""
    problem = saturation_problem(data, cpu or host_cpu(), where)
    if problem is None:
        return {}
    if allow is None:
        allow = os.environ.get(ALLOW_ENV, "") == "1"
    say = say or (lambda msg: print(msg, file=sys.stderr))
    if allow:
        say(f"warning: {problem}; running it on those kernels anyway because {ALLOW_ENV}=1: its outputs are wrong")
        return {}
    say(f"note: {problem}: running it exactly on onnxruntime's slower u8·u8 kernels (session.x64quantprecision); "
        f"re-export it with `ubdiff-onnx export --format qdq --weight-range reduced` (the default; a QAT checkpoint "
        f"trained with full-range weights needs its qat stages retrained) for the fast exact kernels")
    return dict(HIGH_PRECISION_CONFIG)
