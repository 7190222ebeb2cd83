"""benchmarks/avx2_kernels.py: the AVX2-kernel copy of onnxruntime that the INT8 speed figures for
AVX2-only x86 are measured with (docs/int8-cpus.md). If a new onnxruntime moves the code it patches,
these tests say so instead of letting the benchmark time the wrong kernels."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import avx2_kernels  # noqa: E402


def test_patch_bytes_masks_the_xcr0_reads_and_nothing_else():
    xgetbv_mov = bytes.fromhex("0f01d089c0")
    and_r9 = bytes.fromhex("4181e1e6000000")
    far = b"\x90" * (avx2_kernels.MASK_WINDOW + 10)
    data = b"\x90" * 7 + xgetbv_mov + b"\x90" * 20 + and_r9 + far + and_r9 + b"\x90" * 3
    patched, changed = avx2_kernels.patch_bytes(data)
    assert len(patched) == len(data)
    assert patched.count(bytes.fromhex("0f01d0241f")) == 1 and xgetbv_mov not in patched
    # the mask right after an XGETBV is narrowed; the one far from any XGETBV is someone else's code
    assert patched.count(bytes.fromhex("4181e106000000")) == 1 and patched.count(and_r9) == 1
    assert len(changed) == 2


def test_unmaskable_features_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni\n")
    assert avx2_kernels.unmaskable_features(info) == ["avx_vnni"]
    info.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert avx2_kernels.unmaskable_features(info) == []


def test_patch_bytes_refuses_code_it_does_not_know():
    with pytest.raises(avx2_kernels.PatchError, match="need updating"):
        avx2_kernels.patch_bytes(b"\x90" * 64 + bytes.fromhex("0f01d0") + b"\x90" * 8)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or sys.platform != "linux",
                    reason="patches onnxruntime's x86-64 Linux extension module")
def test_installed_onnxruntime_runs_its_avx2_kernels_when_patched(tmp_path):
    """The copy gives AVX2's saturated 41 on the reproducer (whatever this host has) and, where qemu
    is installed, the same float Conv bits as onnxruntime under ``qemu-x86_64 -cpu Haswell``."""
    hidden = avx2_kernels.unmaskable_features()
    if hidden:
        with pytest.raises(avx2_kernels.PatchError, match="cannot hide"):  # refused, never a wrong measurement
            avx2_kernels.check(tmp_path)
        pytest.skip(f"this host has {', '.join(hidden)}: the XCR0 patch cannot make it an AVX2-only proxy (refusal checked)")
    evidence = avx2_kernels.check(avx2_kernels.prepare(tmp_path / "cache"))
    assert evidence["reproducer_patched"] == 41.0
    assert evidence["patched_onnxruntime"].startswith(str(tmp_path / "cache"))
    if "float_conv_bitwise_equal_to_qemu_haswell" in evidence:
        assert evidence["float_conv_bitwise_equal_to_qemu_haswell"] is True
