"""The memorisation check: nearest-training-map distances, generated vs held-out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ubdiff_onnx.data.velocity_models import velocity_batch
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.evaluation.memorisation import memorisation_report, nearest_distances, run_training_maps


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(0)
    q, t = rng.normal(size=(7, 1, 5, 5)), rng.normal(size=(30, 1, 5, 5))
    brute = np.sqrt(((q.reshape(7, 1, -1) - t.reshape(1, 30, -1)) ** 2).mean(-1)).min(1)
    assert np.allclose(nearest_distances(q, t, chunk=8), brute)


def test_a_copier_is_caught_and_fresh_draws_pass():
    train = velocity_batch("curvefault-a", 1, 0, 200)
    held = velocity_batch("curvefault-a", 2, 0, 100)
    fresh = velocity_batch("curvefault-a", 3, 0, 100)
    copies = train[:100] + np.random.default_rng(0).normal(0, 5.0, train[:100].shape).astype(np.float32)
    assert memorisation_report(fresh, held, train)["passes"]
    bad = memorisation_report(copies, held, train)
    assert not bad["passes"] and bad["generated_closer_than_heldout_p5"] > 0.9
    # blur confound: round-tripped held-out maps are the yardstick when given
    r = memorisation_report(fresh, held, train, heldout_roundtrip=held)
    assert r["compared_with"] == "heldout_roundtrip" and r["heldout_roundtrip"] is not None


def test_run_training_maps_rebuilds_split_and_extra(tmp_path):
    from tests.training.conftest import write_fwi

    data = write_fwi(tmp_path / "d", samples=20)
    run = tmp_path / "run"
    run.mkdir()
    split = {"val_fraction": 0.1, "paired_fraction": 1.0, "paired_count": None, "seed": 0}
    (run / "run.json").write_text(json.dumps({"data": str(data), "split": split,
                                              "extra_velocity": {"count": 5, "family": "curvefault-a", "seed": 0}}))
    maps, info = run_training_maps(run)
    assert info["folder_maps"] == 18 and info["extra_maps"] == 5 and maps.shape == (23, 1, 70, 70)
    with pytest.raises(UserError, match="--train-run"):
        run_training_maps(tmp_path / "nowhere")
