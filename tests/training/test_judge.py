"""``inversion train``: the judge's training run — files, resume after an interruption, refusals."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.inversionnet import JudgeConfig
from ubdiff_onnx.training import judge as judge_mod
from ubdiff_onnx.training.interrupt import TrainingInterrupted
from ubdiff_onnx.training.judge import JudgeTrainOptions, train_judge

runner = CliRunner()
CFG = JudgeConfig(width=0.125, time_decimation=8, feature_width=0.25, feature_dim=8)


def _opts(data, out, **kw):
    base = dict(data=[data], out=out, dataset="curvefault-a", config=CFG, epochs=1, max_steps=4, batch_size=4, val_fraction=0.2, threads=1, progress=False)
    return JudgeTrainOptions(**{**base, **kw})


def _weights(out):
    doc = torch.load(out / "judge.pt", weights_only=False)
    return doc, {**{f"i.{k}": v for k, v in doc["inversion"].items()}, **{f"f.{k}": v for k, v in doc["velocity_features"].items()}}


def test_cli_train_then_test(small_fwi, tmp_path):
    out = tmp_path / "judge"
    res = runner.invoke(app, ["inversion", "train", str(small_fwi), str(out), "--dataset", "curvefault-a", "--width", "0.125", "--time-decimation", "8",
                              "--steps", "3", "--batch-size", "4", "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "SSIM (OpenFWI)" in res.output and "mean map" in res.output
    summary = json.loads((out / "judge.json").read_text())
    assert summary["steps"] == 3 and summary["pairs"]["train"] + summary["pairs"]["val"] == 40
    assert set(summary["val"]["judge"]) >= {"mae", "rmse", "mae_ms", "ssim_openfwi", "ssim_valid"}
    assert (out / "val.png").read_bytes()[:4] == b"\x89PNG"
    # an existing judge is neither silently replaced nor resumed
    again = runner.invoke(app, ["inversion", "train", str(small_fwi), str(out), "--dataset", "curvefault-a", "--steps", "3"])
    assert again.exit_code == 1 and "--resume" in again.stderr and "Traceback" not in again.output
    tested = runner.invoke(app, ["inversion", "test", str(out), str(small_fwi), "--out", str(tmp_path / "t.json")])
    assert tested.exit_code == 0, tested.output
    assert "SSIM (OpenFWI)" in tested.stdout and "SSIM (valid" in tested.stdout and "mean-map" in tested.stdout
    rep = json.loads((tmp_path / "t.json").read_text())
    assert rep["seen_in_training"] and rep["data"]["tested"] == 40
    assert 0 <= rep["baseline"]["mae"] <= 2 and rep["metrics"]["rmse"] >= rep["metrics"]["mae"] - 1e-12


def test_interrupted_run_resumes_to_the_uninterrupted_result(small_fwi, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_judge(_opts(small_fwi, straight, max_steps=6, epochs=2))

    stopped = tmp_path / "stopped"
    real = judge_mod.GracefulInterrupt

    class StopAfterTwo(real):
        calls = 0

        @property
        def requested(self):
            StopAfterTwo.calls += 1
            self.signum = 15 if StopAfterTwo.calls >= 2 else None
            return self.signum is not None

    monkeypatch.setattr(judge_mod, "GracefulInterrupt", StopAfterTwo)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train_judge(_opts(small_fwi, stopped, max_steps=6, epochs=2))
    monkeypatch.setattr(judge_mod, "GracefulInterrupt", real)
    doc, _ = _weights(stopped)
    assert doc["train_state"]["step"] == 2 and not doc["complete"]
    train_judge(_opts(small_fwi, stopped, max_steps=6, epochs=2, resume=True))

    a_doc, a = _weights(straight)
    b_doc, b = _weights(stopped)
    assert b_doc["complete"] and b_doc["train_state"]["step"] == 6
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert np.array_equal(a_doc["mean_velocity"], b_doc["mean_velocity"])


def test_resume_with_other_options_is_refused(small_fwi, tmp_path):
    out = tmp_path / "j"
    train_judge(_opts(small_fwi, out, max_steps=2))
    with pytest.raises(UserError, match="other data, sizes or constants"):
        train_judge(_opts(small_fwi, out, max_steps=4, resume=True, config=JudgeConfig(width=0.25, time_decimation=8, feature_width=0.25, feature_dim=8)))


def test_bad_inputs_are_one_line_errors(tmp_path, small_fwi):
    res = runner.invoke(app, ["inversion", "train", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert res.exit_code == 1 and res.stderr.startswith("error:") and "Traceback" not in res.output
    res = runner.invoke(app, ["inversion", "train", str(small_fwi), str(tmp_path / "o"), "--time-decimation", "3", "--dataset", "curvefault-a"])
    assert res.exit_code == 1 and "--time-decimation" in res.stderr
    res = runner.invoke(app, ["inversion", "test", str(tmp_path), str(small_fwi)])
    assert res.exit_code == 1 and "JUDGE" in res.stderr and "inversion train" in res.stderr


def test_lr_schedule_is_a_function_of_the_step():
    from ubdiff_onnx.training.judge import lr_factor

    f = [lr_factor("cosine", s, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.2) and f[4] == pytest.approx(1.0)  # 5 % linear warm-up
    assert all(a >= b for a, b in zip(f[4:], f[5:])) and f[-1] < 0.01
    assert lr_factor("constant", 57, 100) == 1.0

def test_unknown_schedule_is_refused(small_fwi, tmp_path):
    with pytest.raises(UserError, match="--lr-schedule"):
        train_judge(_opts(small_fwi, tmp_path / "j", lr_schedule="step"))
