"""`ubdiff-onnx bench` on the tiny bundles with tiny repeat counts: report files and their structure
(no timing assertions: this machine is shared and noisy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app

COMPONENTS = ("unet", "velocity_decoder", "seismic_decoder")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, tiny_fp32_bundle, tiny_qdq_bundle) -> Path:
    out = tmp_path_factory.mktemp("bench") / "report"
    res = CliRunner().invoke(app, ["bench", str(tiny_fp32_bundle), str(tiny_qdq_bundle), "--threads", "1,2", "--steps", "3",
                                   "--repeat", "2", "--warmup", "1", "--e2e-repeat", "1", "--rounds", "2", "--samplers", "unipc:4,dpmpp3m:3",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_report_files_and_structure(tiny_report, tiny_fp32_bundle, tiny_qdq_bundle):
    for name in ("bench.json", "bench.md", "bench.png"):
        assert (tiny_report / name).is_file() and (tiny_report / name).stat().st_size > 0, name
    assert (tiny_report / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads((tiny_report / "bench.json").read_text())
    m = rep["machine"]
    for key in ("cpu_model", "flags_of_interest", "physical_cores", "logical_cpus", "versions", "peak"):
        assert key in m
    assert m["versions"]["onnxruntime"] and m["versions"]["numpy"]
    assert {"avx2", "fma", "avx512_vnni"} <= set(m["flags_of_interest"])
    assert rep["baseline"] == tiny_fp32_bundle.name
    assert [b["precision"] for b in rep["bundles"]] == ["fp32", "qdq"]
    rows = rep["results"]["rows"]
    assert {(r["label"], r["threads"]) for r in rows} == {(b.name, t) for b in (tiny_fp32_bundle, tiny_qdq_bundle) for t in (1, 2)}
    for r in rows:
        for c in COMPONENTS:
            s = r["components"][c]
            assert s["n"] == 4  # 2 calls x 2 rounds, pooled
            assert 0 < s["min_ms"] <= s["median_ms"] <= s["p90_ms"]
            assert len(s["round_medians_ms"]) == 2
        assert r["end_to_end"]["ddim"]["steps"] == 3 and r["end_to_end"]["ddim"]["n"] == 2
        assert r["end_to_end"]["ddpm"]["steps"] == 256
        assert r["end_to_end"]["unipc-4"]["steps"] == 4 and r["end_to_end"]["dpmpp3m-3"]["n"] == 2
        assert r["total_bytes"] == sum(r["bytes"].values()) > 0
        assert r["peak_rss_bytes"]["sample_process_max"] > 0 and r["peak_rss_bytes"]["measure_process_max"] > 0
        assert r["sample_process"]["sample_s_median"] > 0
        assert r["load_s"]["total_median"] > 0 and set(r["load_s"]["per_component_median"]) == set(COMPONENTS)
        assert r["cli_sample"]["peak_rss_bytes"] > 0 and r["cli_sample"]["wall_s"] > 0
        assert r["torch_imported"] is False  # ONNX workers never import torch
        a = r["arithmetic"]
        assert all(a["macs_per_call"][c] > 0 for c in COMPONENTS)
        assert 0 < a["ddim"]["fraction_of_peak"] < 1
        assert a["peak_kind"] == ("fp32" if r["precision"] == "fp32" else "int8")
        vs = r["vs_baseline"]
        if r["label"] == tiny_fp32_bundle.name:
            assert vs["unet"] == pytest.approx(1.0) and vs["size_fraction"] == pytest.approx(1.0)
        else:
            assert vs["unet"] > 0 and vs["size_fraction"] < 1
    # raw worker outputs: 2 rounds x 2 bundles x 2 thread counts x (measure + sample) + 4 cli runs
    assert len(rep["raw"]) == 2 * 2 * 2 * 2 + 4
    assert all(r["ok"] and not r["torch_imported"] for r in rep["raw"] if r["mode"] != "cli")
    assert rep["results"]["targets"] == []  # the issues' targets are for the paper preset only
    md = (tiny_report / "bench.md").read_text()
    assert "| bundle | precision | threads |" in md and "Achieved fraction of peak" in md
    assert "End-to-end sample per sampler" in md and "unipc-4" in md
    assert tiny_qdq_bundle.name in md


def test_macs_counted_from_graph(tiny_fp32_bundle):
    from ubdiff_onnx.bench.macs import count_bundle_macs

    counts = count_bundle_macs(tiny_fp32_bundle)
    for c in COMPONENTS:
        assert counts[c]["macs"] > 0 and not counts[c]["unknown_nodes"]
    # the seismic decoder ends in Linear(seismic_latent -> 5*1000*70): at least that many MACs
    assert counts["seismic_decoder"]["macs"] >= 350_000


def test_worker_imports_no_torch(tiny_qdq_bundle, tmp_path):
    out = tmp_path / "w.json"
    subprocess.run([sys.executable, "-m", "ubdiff_onnx.bench.worker", str(tiny_qdq_bundle), "--mode", "sample", "--steps", "2",
                    "--out", str(out)], check=True)
    rep = json.loads(out.read_text())
    assert rep["ok"] and rep["torch_imported"] is False and rep["onnx_imported"] is False and rep["peak_rss_bytes"] > 0


def test_bad_bundle_is_one_line_error(tmp_path, tiny_fp32_bundle):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "bundle folder not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["bench", str(tiny_fp32_bundle), "--threads", "1,x", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "--threads" in res.output
    res = runner.invoke(app, ["bench", str(tiny_fp32_bundle), "--baseline", "nothing", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "--baseline" in res.output
    # a modified component file is caught by the worker's sha256 check and reported in one line
    broken = tmp_path / "broken"
    shutil.copytree(tiny_fp32_bundle, broken)
    with open(broken / "unet" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    res = runner.invoke(app, ["bench", str(broken), "--repeat", "1", "--warmup", "0", "--rounds", "1", "--steps", "2", "--no-ddpm",
                              "--no-cli-sample", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "sha256" in res.output and "Traceback" not in res.output


def test_targets_met_and_missed_on_paper_rows():
    from ubdiff_onnx.bench.run import BenchBundle, BenchOptions, targets

    def bundle(label, prec, total):
        return BenchBundle(label, Path(label), prec, "torchscript" if prec.startswith("torchscript") else "onnxruntime", "paper", {}, 128, 256,
                           {"unet": total, "velocity_decoder": 0, "seismic_decoder": 0})

    def row(label, unet, vel, seis, ddim, rss):
        comp = {c: {"median_ms": v} for c, v in zip(COMPONENTS, (unet, vel, seis))}
        return {"label": label, "threads": 1, "components": comp, "end_to_end": {"ddim": {"median_ms": ddim, "n": 3}},
                "peak_rss_bytes": {"sample_process_max": rss}, "sample_process": {"sample_s_median": ddim / 1000}}

    bundles = [bundle("f", "fp32", 1000), bundle("q", "qdq", 250), bundle("t", "torchscript", 1000)]
    rows = [row("f", 10.0, 5.0, 60.0, 600.0, 2e9), row("q", 5.0, 4.5, 20.0, 240.0, 5e8), row("t", 12.0, 6.0, 60.0, 700.0, 1.3e9)]
    got = {t["what"]: t for t in targets(bundles, rows, BenchOptions(threads=[1], steps=50))}
    assert got["U-Net step: QDQ speedup over ORT FP32, 1 thread(s)"]["met"] is True            # 2.0 >= 1.8
    assert got["velocity decoder: QDQ speedup over ORT FP32, 1 thread(s)"]["met"] is False     # 1.11 < 1.3
    assert got["seismic decoder: QDQ speedup over ORT FP32, 1 thread(s)"]["measured"] == pytest.approx(3.0)
    assert got["DDIM-50 sample, 1 thread: QDQ speedup over TorchScript FP32"]["met"] is False  # 2.92 < 3
    assert got["DDIM-50 sample, 1 thread: QDQ speedup over ORT FP32"]["met"] is True
    assert got["QDQ DDIM-50 sample, 1 thread, end to end"]["met"] is True
    assert got["QDQ bundle size / FP32 bundle size"]["met"] is True
    rss = next(t for w, t in got.items() if "peak RSS" in w)
    assert rss["measured"] == pytest.approx(500.0) and rss["met"] is True
