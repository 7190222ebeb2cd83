"""Fixed seeds reproduce a run; an interrupted run resumes to exactly the uninterrupted result."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from tests.training.conftest import short_options
from ubdiff_onnx.checkpoints.format import load_checkpoint
from ubdiff_onnx.training import Overrides, train
from ubdiff_onnx.training.interrupt import TrainingInterrupted
from ubdiff_onnx.training.loop import StageRunner

QUIET = dict(say=lambda msg: None)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_differs(tmp_path, small_fwi):
    sds = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(short_options(tmp_path / name, small_fwi, stage="autoencoder", seed=seed), **QUIET)
        sds.append(load_checkpoint(tmp_path / name / "autoencoder.pt").state_dict)
    assert _equal(sds[0], sds[1])
    assert not _equal(sds[0], sds[2])


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path, small_fwi, tiny_checkpoint, monkeypatch):
    """Diffusion stage (EMA, per-step noise, Adam state) from a seeded tiny checkpoint, 2 epochs × 3 steps."""
    over = Overrides(epochs=2, steps=3, batch_size=8)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    train(short_options(ref_dir, small_fwi, stage="diffusion", init=tiny_checkpoint, overrides=over), **QUIET)

    original, calls = StageRunner._step, {"n": 0}

    def step_then_signal(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # second step of epoch 2: the handler sets a flag, the loop stops after it
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(StageRunner, "_step", step_then_signal)
    with pytest.raises(TrainingInterrupted) as info:
        train(short_options(run_dir, small_fwi, stage="diffusion", init=tiny_checkpoint, overrides=over), **QUIET)
    assert info.value.exit_code == 128 + signal.SIGTERM and "--resume" in str(info.value)
    partial = load_checkpoint(run_dir / "diffusion.pt")
    assert partial.meta["stage_complete"] is False
    assert (partial.meta["train_state"]["epoch"], partial.meta["train_state"]["step_in_epoch"]) == (1, 1)
    monkeypatch.undo()

    train(short_options(run_dir, small_fwi, stage="diffusion", resume=True, overrides=over), **QUIET)
    ref, got = load_checkpoint(ref_dir / "diffusion.pt"), load_checkpoint(run_dir / "diffusion.pt")
    assert got.meta["stage_complete"] is True
    assert _equal(ref.state_dict, got.state_dict)
    assert _equal(ref.ema, got.ema)
    assert not list(run_dir.glob(".*.tmp"))


def test_resume_skips_finished_stages(tmp_path, small_fwi):
    run_dir = tmp_path / "run"
    train(short_options(run_dir, small_fwi, stage="autoencoder"), **QUIET)
    before = (run_dir / "autoencoder.pt").stat().st_mtime_ns
    results = train(short_options(run_dir, small_fwi, stage="autoencoder", resume=True), **QUIET)
    assert results[0]["skipped"] and (run_dir / "autoencoder.pt").stat().st_mtime_ns == before
