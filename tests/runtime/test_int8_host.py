"""The runtime's host check: an INT8 bundle whose u8·s8 pair sums exceed int16 is refused on x86
CPUs without VNNI (one line naming the missing feature and the export option), runs elsewhere."""

from __future__ import annotations

import pytest

from ubdiff_onnx.runtime.int8_host import (
    ALLOW_ENV,
    HostCPU,
    bundle_pair_sum,
    check_host,
    host_cpu,
    max_pair_sum,
    read_cpu_flags,
)
from ubdiff_onnx.runtime.manifest import BundleError

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


@pytest.mark.parametrize("cpu,has", [(HostCPU("x86_64", HASWELL), "avx2"), (HostCPU("x86_64", SKYLAKE_SP), "avx512bw")])
@pytest.mark.parametrize("precision", ["qdq", "int4"])
def test_full_range_bundle_is_refused_without_vnni(cpu, has, precision):
    with pytest.raises(BundleError) as err:
        check_host(manifest("full", precision), "B", cpu=cpu, allow=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("B: ")
    assert "avx512_vnni or avx_vnni" in msg and f"(has {has})" in msg and "--weight-range reduced" in msg and ALLOW_ENV in msg


def test_legacy_qdq_manifest_without_record_is_assumed_full_range():
    assert bundle_pair_sum({"precision": "qdq"}) == 65280
    assert bundle_pair_sum({"precision": "fp32"}) is None
    with pytest.raises(BundleError):
        check_host({"precision": "qdq"}, cpu=HostCPU("x86_64", HASWELL), allow=False)


@pytest.mark.parametrize("cpu", [HostCPU("x86_64", CASCADE_LAKE), HostCPU("x86_64", ALDER_LAKE), HostCPU("x86_64", ZEN4),
                                 HostCPU("aarch64", None), HostCPU("x86_64", None), HostCPU("riscv64", None)])
def test_full_range_runs_where_it_is_exact_or_unknown(cpu):
    assert check_host(manifest("full"), cpu=cpu, allow=False) is None


@pytest.mark.parametrize("cpu", [HostCPU("x86_64", HASWELL), HostCPU("x86_64", SKYLAKE_SP), HostCPU("x86_64", frozenset({"sse2"}))])
def test_reduced_range_and_fp32_run_everywhere(cpu):
    assert check_host(manifest("reduced"), cpu=cpu, allow=False) is None
    assert check_host({"precision": "fp32"}, cpu=cpu, allow=False) is None


def test_allow_flag_warns_and_runs(monkeypatch):
    said: list[str] = []
    cpu = HostCPU("x86_64", HASWELL)
    assert check_host(manifest("full"), cpu=cpu, allow=True, warn=said.append)
    assert len(said) == 1 and said[0].startswith("warning: ") and "avx2" in said[0]
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert check_host(manifest("full"), cpu=cpu, warn=said.append)
    monkeypatch.setenv(ALLOW_ENV, "0")
    with pytest.raises(BundleError):
        check_host(manifest("full"), cpu=cpu, warn=said.append)


def test_reads_proc_cpuinfo_flags(tmp_path):
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512bw\nbugs\t\t: spectre_v1\n"
    (tmp_path / "cpuinfo").write_text(text * 2)
    cpu = host_cpu(str(tmp_path / "cpuinfo"), machine="x86_64")
    assert cpu.flags == {"fpu", "sse2", "avx2", "avx512bw"} and cpu.family == "x86-avx512-no-vnni"
    assert read_cpu_flags("processor : 0\nFeatures : fp asimd asimddp\n") is None  # ARM cpuinfo has no x86 flags
    assert host_cpu(str(tmp_path / "missing"), machine="x86_64").flags is None


def test_loading_components_checks_the_host_first(tmp_path, monkeypatch):
    """Where bundles are loaded: the manifest's int8 record is checked before any session starts."""
    from ubdiff_onnx.runtime import int8_host
    from ubdiff_onnx.runtime.backends import load_components
    from ubdiff_onnx.runtime.manifest import Manifest

    monkeypatch.setattr(int8_host, "host_cpu", lambda *a, **k: HostCPU("x86_64", HASWELL))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(BundleError, match="without avx512_vnni or avx_vnni"):
        load_components(Manifest(tmp_path, manifest("full")))


def test_sample_refuses_then_runs_with_the_allow_flag(tiny_qat_bundle, tmp_path, monkeypatch):
    """Through the CLI, on a (simulated) AVX2-only host: a full-range bundle is refused in one line
    with no output file; ``--allow-int8-saturation`` runs it with a warning."""
    import json
    import shutil

    from typer.testing import CliRunner

    from ubdiff_onnx.cli.main import app
    from ubdiff_onnx.runtime import int8_host

    bundle = tmp_path / "legacy-full-range"
    shutil.copytree(tiny_qat_bundle, bundle)
    man = json.loads((bundle / "manifest.json").read_text())
    man.pop("int8", None)  # as exported before the record existed: full-range weights assumed
    (bundle / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setattr(int8_host, "host_cpu", lambda *a, **k: HostCPU("x86_64", HASWELL))
    monkeypatch.delenv(ALLOW_ENV, raising=False)  # also undoes what the flag sets in this process
    out = tmp_path / "s.npz"
    args = ["sample", str(bundle), "--num-samples", "1", "--steps", "3", "--out", str(out)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "avx512_vnni" in refused.output and not out.exists(), refused.output
    ran = CliRunner().invoke(app, [*args, "--allow-int8-saturation"])
    assert ran.exit_code == 0 and out.exists(), ran.output
    assert "warning:" in ran.output
