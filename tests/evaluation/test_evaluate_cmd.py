"""``ubdiff-onnx evaluate`` end to end on the tiny bundles (a handful of samples, few DDIM steps)."""

import json
import math

import pytest
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FILES = ("evaluate.json", "evaluate.md", "samples.png", "physics.png", "distribution.png")


def _evaluate(*args):
    result = runner.invoke(app, ["evaluate", "--steps", "4", "--threads", "1", "--num-real", "8", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _finite(x):
    return x is not None and math.isfinite(x)


def test_int8_against_fp32_produces_all_three_sections(tiny_qdq_bundle, tiny_fp32_bundle, tiny_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "report"
    result = _evaluate("--bundle", tiny_qdq_bundle, "--reference", tiny_fp32_bundle, "--checkpoint", tiny_checkpoint,
                       "--data", small_dataset, "--num-samples", 3, "--panels", 2, "--out", out)
    for name in FILES:
        assert (out / name).is_file(), name
    for name in FILES[2:]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    rep = json.loads((out / "evaluate.json").read_text())
    assert rep["bundle"]["precision"] == "qdq" and rep["reference"]["precision"] == "fp32"

    fid = rep["fidelity"]
    for key in ("velocity_mae", "velocity_ssim", "seismic_rel_l2", "seismic_corr", "seismic_rel_l2_log"):
        assert len(fid[key]["per_sample"]) == 3 and _finite(fid[key]["mean"]), key
    assert 0 <= fid["velocity_mae"]["mean"] < 500  # m/s: INT8 stays close to FP32 from the same x_T
    assert -1 <= fid["velocity_ssim"]["mean"] <= 1

    fr = rep["distribution"]["frechet"]
    for key in ("bundle_vs_real", "reference_vs_real", "bundle_vs_reference", "real_half_vs_half"):
        assert _finite(fr[key]) and fr[key] >= 0, key
    assert rep["encoder"]["found_via"] == "--checkpoint" and rep["encoder"]["config_matches_bundle"]
    assert set(rep["distribution"]["velocity"]) == {"real", "bundle", "reference"}

    phys = rep["physics"]
    assert set(phys) == {"bundle", "reference", "real"}
    assert phys["real"]["rel_l2"]["max"] < 1e-3  # real pairs of data made by the same simulator
    assert all(_finite(phys[k]["rel_l2"]["mean"]) for k in phys)

    assert [t["met"] is not None for t in rep["targets"]] == [True] * 4
    md = (out / "evaluate.md").read_text()
    for heading in ("## Fidelity", "## Distribution", "## Physics consistency", "## Targets", "samples.png"):
        assert heading in md
    assert "velocity MAE" in result.stderr and "Fréchet" in result.stderr


def test_same_bundle_as_reference_is_perfect_and_no_checkpoint_skips_frechet(tiny_fp32_bundle, small_dataset, tmp_path):
    out = tmp_path / "report"
    _evaluate("--bundle", tiny_fp32_bundle, "--reference", tiny_fp32_bundle, "--data", small_dataset, "--num-samples", 2, "--out", out)
    rep = json.loads((out / "evaluate.json").read_text())
    assert rep["fidelity"]["velocity_mae"]["max"] == 0.0
    assert rep["fidelity"]["velocity_ssim"]["min"] == pytest.approx(1.0, abs=1e-12)
    assert rep["fidelity"]["seismic_rel_l2"]["max"] == 0.0
    assert rep["physics"]["bundle"]["rel_l2"]["per_sample"] == rep["physics"]["reference"]["rel_l2"]["per_sample"]
    assert rep["distribution"]["frechet"] is None and rep["encoder"] is None
    assert any("--checkpoint" in n for n in rep["notes"])
    assert rep["distribution"]["velocity"]["bundle"]["mean"] > 0  # histograms need no encoder
    assert [t["met"] for t in rep["targets"]] == [True, True, None, True]
    assert (out / "distribution.png").is_file()


def test_without_reference_skips_fidelity(tiny_fp32_bundle, tiny_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "report"
    _evaluate("--bundle", tiny_fp32_bundle, "--checkpoint", tiny_checkpoint, "--data", small_dataset, "--num-samples", 2, "--out", out)
    rep = json.loads((out / "evaluate.json").read_text())
    assert rep["fidelity"] is None and rep["reference"] is None
    assert _finite(rep["distribution"]["frechet"]["bundle_vs_real"])
    assert rep["distribution"]["frechet"]["reference_vs_real"] is None
    assert set(rep["physics"]) == {"bundle", "real"}
    assert all(t["met"] is None for t in rep["targets"])
    assert "Skipped: no `--reference`" in (out / "evaluate.md").read_text()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--bundle", "{missing}"], "--bundle"),
        (["--bundle", "{fp32}", "--steps", "100000"], "--steps"),
        (["--bundle", "{fp32}", "--sampler", "dpmpp3m", "--steps", "2"], "too few for dpmpp3m"),
        (["--bundle", "{fp32}", "--sampler", "heun"], "--sampler"),
        (["--bundle", "{fp32}", "--checkpoint", "{missing}"], "--checkpoint"),
        (["--bundle", "{fp32}", "--data", "{missing}"], "nope"),
    ],
)
def test_bad_input_is_one_line(args, needle, tiny_fp32_bundle, small_dataset, tmp_path):
    fill = {"missing": str(tmp_path / "nope"), "fp32": str(tiny_fp32_bundle)}
    argv = ["evaluate", "--num-samples", "2", "--data", str(small_dataset), "--out", str(tmp_path / "r")] + [a.format(**fill) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and needle in err, err
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
