"""The runtime's host check: an INT8 bundle whose u8·s8 pair sums exceed int16 runs on onnxruntime's
exact u8·u8 kernels (session.x64quantprecision) on x86 CPUs without VNNI, said in one line naming the
missing feature and the export option; everywhere else, and for 7-bit bundles, nothing changes."""

from __future__ import annotations

import pytest

from ubdiff_onnx.runtime.int8_host import (
    ALLOW_ENV,
    HostCPU,
    FLAGS_ENV,
    HIGH_PRECISION_CONFIG,
    bundle_pair_sum,
    host_cpu,
    max_pair_sum,
    read_cpu_flags,
    session_config,
)

HASWELL = frozenset("fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2".split())
SKYLAKE_SP = HASWELL | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
CASCADE_LAKE = SKYLAKE_SP | {"avx512_vnni"}
ALDER_LAKE = HASWELL | {"avx_vnni"}
ZEN4 = CASCADE_LAKE | {"avx512_bf16"}


def manifest(weight_range: str | None, precision: str = "qdq") -> dict:
    data = {"precision": precision}
    if weight_range is not None:
        data["int8"] = {"weights": {"range": {"reduced": [-64, 64], "full": [-128, 127]}[weight_range]},
                        "max_pair_sum": max_pair_sum(weight_range)}
    return data


def test_pair_sums():
    assert max_pair_sum("reduced") == 32640 <= 32767 < max_pair_sum("full") == 65280


@pytest.mark.parametrize("cpu,family", [
    (HostCPU("x86_64", HASWELL), "x86-avx2"),
    (HostCPU("x86_64", SKYLAKE_SP), "x86-avx512-no-vnni"),
    (HostCPU("x86_64", CASCADE_LAKE), "x86-vnni"),
    (HostCPU("x86_64", ALDER_LAKE), "x86-vnni"),
    (HostCPU("aarch64", None), "arm"),
    (HostCPU("x86_64", None), "x86-unknown"),
])
def test_families(cpu, family):
    assert cpu.family == family


def said_by(fn):
    lines: list[str] = []
    return lines, (lambda **kw: fn(say=lines.append, **kw))


@pytest.mark.parametrize("cpu,has", [(HostCPU("x86_64", HASWELL), "avx2"), (HostCPU("x86_64", SKYLAKE_SP), "avx512bw")])
@pytest.mark.parametrize("precision", ["qdq", "int4"])
def test_full_range_bundle_runs_on_exact_kernels_without_vnni(cpu, has, precision):
    lines, call = said_by(session_config)
    assert call(data=manifest("full", precision), where="B", cpu=cpu, allow=False) == HIGH_PRECISION_CONFIG
    assert len(lines) == 1 and "\n" not in lines[0] and lines[0].startswith("note: B: ")
    assert "avx512_vnni or avx_vnni" in lines[0] and f"(has {has})" in lines[0] and "--weight-range reduced" in lines[0]
    assert "session.x64quantprecision" in lines[0]


def test_legacy_qdq_manifest_without_record_is_assumed_full_range():
    assert bundle_pair_sum({"precision": "qdq"}) == 65280
    assert bundle_pair_sum({"precision": "fp32"}) is None
    lines, call = said_by(session_config)
    assert call(data={"precision": "qdq"}, cpu=HostCPU("x86_64", HASWELL), allow=False) == HIGH_PRECISION_CONFIG


def test_unknown_x86_flags_take_the_exact_kernels_too():
    """No /proc/cpuinfo (macOS, Windows): most x86 CPUs there have no VNNI, so play safe."""
    lines, call = said_by(session_config)
    assert call(data=manifest("full"), cpu=HostCPU("x86_64", None), allow=False) == HIGH_PRECISION_CONFIG
    assert "could not be read" in lines[0]


@pytest.mark.parametrize("cpu", [HostCPU("x86_64", CASCADE_LAKE), HostCPU("x86_64", ALDER_LAKE), HostCPU("x86_64", ZEN4),
                                 HostCPU("aarch64", None), HostCPU("riscv64", None)])
def test_full_range_runs_as_it_is_where_it_is_exact(cpu):
    lines, call = said_by(session_config)
    assert call(data=manifest("full"), cpu=cpu, allow=False) == {} and lines == []


@pytest.mark.parametrize("cpu", [HostCPU("x86_64", HASWELL), HostCPU("x86_64", SKYLAKE_SP), HostCPU("x86_64", frozenset({"sse2"}))])
def test_reduced_range_and_fp32_run_everywhere_on_the_fast_kernels(cpu):
    lines, call = said_by(session_config)
    assert call(data=manifest("reduced"), cpu=cpu, allow=False) == {}
    assert call(data={"precision": "fp32"}, cpu=cpu, allow=False) == {}
    assert lines == []


def test_allow_flag_keeps_the_saturating_kernels_with_a_warning(monkeypatch):
    cpu = HostCPU("x86_64", HASWELL)
    lines, call = said_by(session_config)
    assert call(data=manifest("full"), cpu=cpu, allow=True) == {}
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "avx2" in lines[0] and "wrong" in lines[0]
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert call(data=manifest("full"), cpu=cpu) == {}
    monkeypatch.setenv(ALLOW_ENV, "0")
    assert call(data=manifest("full"), cpu=cpu) == HIGH_PRECISION_CONFIG


def test_reads_proc_cpuinfo_flags(tmp_path):
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512bw\nbugs\t\t: spectre_v1\n"
    (tmp_path / "cpuinfo").write_text(text * 2)
    cpu = host_cpu(str(tmp_path / "cpuinfo"), machine="x86_64")
    assert cpu.flags == {"fpu", "sse2", "avx2", "avx512bw"} and cpu.family == "x86-avx512-no-vnni"
    assert read_cpu_flags("processor : 0\nFeatures : fp asimd asimddp\n") is None  # ARM cpuinfo has no x86 flags
    assert host_cpu(str(tmp_path / "missing"), machine="x86_64").flags is None


def test_flags_from_the_environment_win(tmp_path, monkeypatch):
    """Under qemu-x86_64 -cpu Haswell /proc/cpuinfo is the host's: the variable says what the CPU is."""
    (tmp_path / "cpuinfo").write_text("flags\t\t: avx2 avx512bw avx512_vnni\n")
    monkeypatch.setenv(FLAGS_ENV, "sse4_2 avx2 fma")
    assert host_cpu(str(tmp_path / "cpuinfo"), machine="x86_64").family == "x86-avx2"


def test_loading_components_gives_every_session_the_host_config(tiny_qat_bundle, tmp_path, monkeypatch):
    """Where bundles are loaded (sampler, bench, validation): a full-range bundle on a (simulated)
    AVX2-only host gets the config in every session, said once; a 7-bit bundle gets nothing."""
    import json
    import shutil

    from ubdiff_onnx.runtime import int8_host
    from ubdiff_onnx.runtime.backends import load_components
    from ubdiff_onnx.runtime.manifest import read_manifest

    monkeypatch.setattr(int8_host, "host_cpu", lambda *a, **k: HostCPU("x86_64", HASWELL))
    monkeypatch.setenv(ALLOW_ENV, "0")
    legacy = _full_range_copy(tiny_qat_bundle, tmp_path)
    def entry(session):
        try:
            return session.get_session_options().get_session_config_entry("session.x64quantprecision")
        except RuntimeError:  # onnxruntime: "does not have configuration with key"
            return None

    for bundle, want in ((legacy, "1"), (tiny_qat_bundle, None)):
        for comp in load_components(read_manifest(bundle), threads=1).values():
            assert entry(comp.session) == want
    assert json.loads((tiny_qat_bundle / "manifest.json").read_text())["int8"]["max_pair_sum"] == 32640
    shutil.rmtree(legacy)


def _full_range_copy(bundle, tmp_path):
    """The bundle as if exported before the int8 record existed: full-range weights assumed."""
    import json
    import shutil

    out = tmp_path / "legacy-full-range"
    shutil.copytree(bundle, out)
    man = json.loads((out / "manifest.json").read_text())
    man.pop("int8", None)
    (out / "manifest.json").write_text(json.dumps(man))
    return out


def test_sample_runs_a_full_range_bundle_exactly_and_says_so(tiny_qat_bundle, tmp_path, monkeypatch):
    """Through the CLI, on a (simulated) AVX2-only host: a full-range bundle samples, with one note
    naming the missing feature and the export option; ``--allow-int8-saturation`` warns instead."""
    from typer.testing import CliRunner

    from ubdiff_onnx.cli.main import app
    from ubdiff_onnx.runtime import int8_host

    bundle = _full_range_copy(tiny_qat_bundle, tmp_path)
    monkeypatch.setattr(int8_host, "host_cpu", lambda *a, **k: HostCPU("x86_64", HASWELL))
    monkeypatch.setenv(ALLOW_ENV, "0")  # recorded, so that teardown also removes what the flag sets in this process
    out = tmp_path / "s.npz"
    args = ["sample", str(bundle), "--num-samples", "1", "--steps", "3", "--out", str(out)]
    exact = CliRunner().invoke(app, args)
    assert exact.exit_code == 0 and out.exists(), exact.output
    assert "note:" in exact.output and "avx512_vnni" in exact.output and "warning:" not in exact.output
    out.unlink()
    fast = CliRunner().invoke(app, [*args, "--allow-int8-saturation"])
    assert fast.exit_code == 0 and out.exists(), fast.output
    assert "warning:" in fast.output and "wrong" in fast.output
