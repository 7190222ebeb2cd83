"""Bad input → one clear error line, and nothing already written is lost."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tests.training.conftest import short_options
from ubdiff_onnx.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from ubdiff_onnx.cli.main import app
from ubdiff_onnx.config import preset
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.training import Overrides, train
from ubdiff_onnx.training.phases import PhaseModule

runner = CliRunner()
QUIET = dict(say=lambda msg: None)


def _cli_error(*args) -> str:
    args = [*map(str, args)] + ([] if "--device" in args else ["--device", "cpu"])
    result = runner.invoke(app, ["train", *args, "--no-progress"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") or "Error" in result.stderr, result.stderr
    return result.stderr


def test_unknown_preset_and_stage(tmp_path, small_fwi):
    assert "unknown preset 'huge'" in _cli_error(tmp_path / "r", "--data", small_fwi, "--preset", "huge")
    assert "unknown stage 'vae'" in _cli_error(tmp_path / "r", "--data", small_fwi, "--stage", "vae")
    assert not (tmp_path / "r").exists()


def test_data_folder_that_fails_validation(tmp_path):
    (tmp_path / "bad" / "seismic_data").mkdir(parents=True)
    err = _cli_error(tmp_path / "r", "--data", tmp_path / "bad", "--dataset", "curvefault-a")
    assert "velocity_map" in err


def test_previous_stage_missing_or_from_another_preset(tmp_path, small_fwi):
    run_dir = tmp_path / "r"
    err = _cli_error(run_dir, "--data", small_fwi, "--dataset", "curvefault-a", "--stage", "seismic")
    assert "autoencoder.pt not found" in err
    cfg = preset("tiny").replace(preset="paper")  # tiny-sized stand-in labelled with another preset
    save_checkpoint(Checkpoint(cfg, UBDiff(cfg).state_dict(), meta={"dataset": "curvefault-a", "stage_complete": True}),
                    run_dir / "autoencoder.pt")
    err = _cli_error(run_dir, "--data", small_fwi, "--dataset", "curvefault-a", "--preset", "tiny", "--stage", "seismic")
    assert "trained with preset 'paper'" in err and "--preset tiny" in err


def test_existing_checkpoint_needs_resume_or_overwrite(tmp_path, small_fwi):
    run_dir = tmp_path / "r"
    train(short_options(run_dir, small_fwi, stage="autoencoder"), **QUIET)
    err = _cli_error(run_dir, "--data", small_fwi, "--stage", "autoencoder", "--steps", "1")
    assert "exists: pass --resume" in err
    assert "this run uses --preset tiny, not paper" in _cli_error(run_dir, "--preset", "paper", "--stage", "seismic")


def test_out_of_memory_keeps_the_last_checkpoint(tmp_path, small_fwi, monkeypatch):
    run_dir = tmp_path / "r"
    over = Overrides(epochs=2, steps=2, batch_size=8)
    original, calls = PhaseModule.forward, {"n": 0}

    def forward(self, inputs):
        calls["n"] += 1
        if calls["n"] == 3:  # first step of epoch 2
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, inputs)

    monkeypatch.setattr(PhaseModule, "forward", forward)
    with pytest.raises(UserError, match="out of memory at --batch-size 8.*saved.*--resume"):
        train(short_options(run_dir, small_fwi, stage="autoencoder", overrides=over), **QUIET)
    kept = load_checkpoint(run_dir / "autoencoder.pt")  # the state after the last completed step
    assert (kept.meta["train_state"]["epoch"], kept.meta["train_state"]["step_in_epoch"]) == (1, 0)
    assert not kept.meta["stage_complete"]
    monkeypatch.undo()
    train(short_options(run_dir, small_fwi, stage="autoencoder", resume=True, overrides=Overrides(epochs=2, steps=2, batch_size=4)),
          **QUIET)
    assert load_checkpoint(run_dir / "autoencoder.pt").meta["stage_complete"]


def test_nan_loss_is_reported(tmp_path, small_fwi, monkeypatch):
    monkeypatch.setattr(PhaseModule, "forward", lambda self, inputs: (torch.tensor(float("nan"), requires_grad=True), {}))
    with pytest.raises(UserError, match="NaN/inf"):
        train(short_options(tmp_path / "r", small_fwi, stage="autoencoder"), **QUIET)


def test_cuda_without_gpu(tmp_path, small_fwi):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert "no CUDA device" in _cli_error(tmp_path / "r", "--data", small_fwi, "--dataset", "curvefault-a", "--device", "cuda")
