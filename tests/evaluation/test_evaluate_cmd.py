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


def test_judge_adds_pairwise_ssim_and_per_modality_frechet(tiny_qdq_bundle, tiny_fp32_bundle, tiny_judge, small_dataset, tmp_path):
    out = tmp_path / "report"
    result = _evaluate("--bundle", tiny_qdq_bundle, "--reference", tiny_fp32_bundle, "--judge", tiny_judge,
                       "--data", small_dataset, "--num-samples", 4, "--panels", 2, "--out", out)
    rep = json.loads((out / "evaluate.json").read_text())
    jd = rep["judge"]
    assert jd["n_generated"] == 4 and jd["n_real"] == 8 and jd["frechet_count"] == 4  # 2N real pairs: floor at equal counts
    for key in ("real_ceiling", "bundle", "reference"):
        s = jd["pairwise_ssim"][key]
        assert _finite(s["mean"]) and -1 <= s["mean"] <= 1, key
    assert len(jd["pairwise_ssim"]["real_ceiling"]["per_sample"]) == 8
    for mod in ("seismic", "velocity"):
        e = jd["frechet"][mod]
        for key in ("real_floor", "bundle", "reference"):
            assert _finite(e[key]) and e[key] >= 0, (mod, key)
    assert jd["frechet"]["seismic"]["feature_dim"] == 64 and jd["frechet"]["velocity"]["feature_dim"] == 8
    # the judge trained on this very folder: the report says the ceiling is optimistic
    assert any("data the judge was trained on" in n for n in rep["notes"])
    md = (out / "evaluate.md").read_text()
    assert "## The judge" in md and "pairwise SSIM (OpenFWI)" in md and "real pairs (8; ceiling / floor)" in md and "judge.png" in md
    assert (out / "judge.png").read_bytes()[:8] == PNG_MAGIC
    assert "pairwise SSIM (OpenFWI)" in result.stderr and "Fréchet seismic" in result.stderr and "floor" in result.stderr


def test_without_judge_the_report_says_how_to_get_one(tiny_fp32_bundle, small_dataset, tmp_path):
    out = tmp_path / "report"
    result = _evaluate("--bundle", tiny_fp32_bundle, "--data", small_dataset, "--num-samples", 2, "--out", out, "--no-physics")
    rep = json.loads((out / "evaluate.json").read_text())
    assert rep["judge"] is None
    assert rep["physics"] is None and not (out / "physics.png").exists() and "Skipped (`--no-physics`)" in (out / "evaluate.md").read_text()
    assert "inversion train" in (out / "evaluate.md").read_text() and "inversion train" in result.stderr


def test_judge_of_another_dataset_is_refused_naming_both(tiny_fp32_bundle, small_dataset, tmp_path):
    import torch

    from ubdiff_onnx.models.inversionnet import JudgeConfig
    from ubdiff_onnx.training.judge import JudgeTrainOptions, train_judge

    other = tmp_path / "judge-b"
    train_judge(JudgeTrainOptions(data=[small_dataset], out=other, dataset="curvefault-b", config=JudgeConfig(width=0.125, time_decimation=8, feature_width=0.25, feature_dim=8),
                                  epochs=1, max_steps=1, batch_size=4, val_fraction=0.25, threads=1, progress=False))
    res = runner.invoke(app, ["evaluate", "--bundle", str(tiny_fp32_bundle), "--judge", str(other), "--data", str(small_dataset), "--num-samples", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    line = res.stderr.strip()
    assert line.count("\n") == 0 and "curvefault-b" in line and "curvefault-a" in line
    assert not (tmp_path / "r").exists()  # refused before anything was written

    # another shape: a judge file recording other sample shapes
    doc = torch.load(other / "judge.pt", weights_only=False)
    doc["constants"] = {"name": "curvefault-a", "data_min": -26.48, "data_max": 52.32, "label_min": 1500.0, "label_max": 4500.0}
    doc["shapes"]["seismic"] = [5, 2000, 70]
    torch.save(doc, other / "judge.pt")
    res = runner.invoke(app, ["evaluate", "--bundle", str(tiny_fp32_bundle), "--judge", str(other), "--data", str(small_dataset), "--num-samples", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "(5, 2000, 70)" in res.stderr and "(5, 1000, 70)" in res.stderr
