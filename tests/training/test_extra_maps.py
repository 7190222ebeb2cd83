"""--extra-velocity-maps: generator maps join the velocity-only stages without lengthening an epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.conftest import short_options, write_fwi
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.training.config import extra_velocity_default, phase_defaults
from ubdiff_onnx.training.data import TensorDictDataset, WithExtraMaps, epoch_batches, extra_velocity_maps


def _synth_folder(tmp_path, samples=24):
    root = write_fwi(tmp_path / "synth", samples=samples)
    (root / "synth.json").write_text(json.dumps({"family": "curvefault-a"}))
    return root


def test_epoch_keeps_the_folder_length_but_draws_from_all_maps():
    batches = epoch_batches(1000, 10, seed=1, epoch=0, steps=None, epoch_size=40)
    assert len(batches) == 4
    assert torch.cat(batches).max() >= 40  # drawn from a permutation of all 1000, not the first 40
    others = epoch_batches(1000, 10, seed=1, epoch=1, steps=None, epoch_size=40)
    assert not torch.equal(torch.cat(batches), torch.cat(others))
    assert len(epoch_batches(30, 10, seed=1, epoch=0, steps=None)) == 3  # unchanged without epoch_size


def test_with_extra_maps_serves_velocity_from_both():
    base = TensorDictDataset({"velocity": torch.zeros(3, 1, 70, 70)})
    ds = WithExtraMaps(base, torch.ones(5, 1, 70, 70))
    assert len(ds) == 8 and ds.epoch_size == 3
    assert ds[0]["velocity"].sum() == 0 and ds[7]["velocity"].mean() == 1


def test_extra_maps_are_the_generators_and_seeded():
    from ubdiff_onnx.runtime.normalization import constants_for

    c = constants_for("curvefault-a")
    a = extra_velocity_maps("curvefault-a", 4, 0, c)
    assert a.shape == (4, 1, 70, 70) and a.dtype == np.float32 and -1.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, extra_velocity_maps("curvefault-a", 4, 0, c))
    assert not np.array_equal(a, extra_velocity_maps("curvefault-a", 4, 1, c))


def test_small_preset_defaults():
    assert extra_velocity_default("small") > 0 and extra_velocity_default("tiny") == 0
    assert set(phase_defaults("small")) == set(phase_defaults("tiny"))


def test_run_records_and_fixes_the_extra_maps(tmp_path):
    from ubdiff_onnx.training import train

    data = _synth_folder(tmp_path)
    run = tmp_path / "run"
    said: list[str] = []
    train(short_options(run, data, stage="autoencoder", extra_velocity_maps=32), say=said.append)
    info = json.loads((run / "run.json").read_text())
    assert info["extra_velocity"] == {"count": 32, "family": "curvefault-a", "seed": 0}
    assert any("adding 32 curvefault-a generator maps" in m for m in said)
    with pytest.raises(UserError, match="--extra-velocity-maps 64: this run's is fixed at 32"):
        train(short_options(run, data, stage="autoencoder", extra_velocity_maps=64, overwrite=True), say=lambda m: None)


def test_extra_maps_need_a_generated_folder(tmp_path, small_fwi):
    from ubdiff_onnx.training import train

    with pytest.raises(UserError, match="was not made by `data synth`"):
        train(short_options(tmp_path / "run", small_fwi, stage="autoencoder", extra_velocity_maps=8), say=lambda m: None)
    # the small preset's default silently falls back to the folder alone (recorded as 0)
    run = tmp_path / "run2"
    opts = short_options(run, small_fwi, stage="autoencoder", preset="small")
    train(opts, say=lambda m: None)
    assert json.loads((run / "run.json").read_text())["extra_velocity"]["count"] == 0
