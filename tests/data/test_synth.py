"""Synthetic OpenFWI-like data: families, amplitudes vs the official ranges, layout, determinism, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ubdiff_onnx.data import synth
from ubdiff_onnx.data.forward import forward_model
from ubdiff_onnx.data.openfwi import open_folder
from ubdiff_onnx.data.synth import synthesize
from ubdiff_onnx.data.velocity_models import FAMILIES, velocity_batch
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.normalization import constants_for, normalize_seismic


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_velocities_and_amplitudes_match_openfwi(family):
    vel = velocity_batch(family, seed=11, start=0, count=2)
    assert vel.shape == (2, 1, 70, 70) and vel.dtype == np.float32
    assert vel.min() >= 1500 and vel.max() <= 4500
    assert all(len(np.unique(v)) >= 2 for v in vel)  # layered, not uniform
    seis = forward_model(vel)
    c = constants_for(family)
    assert c.data_min <= seis.min() and seis.max() <= c.data_max, (float(seis.min()), float(seis.max()))
    outside = np.mean(np.abs(normalize_seismic(seis, c)) > 1)
    assert outside < 0.005


def test_a_versions_increase_with_depth():
    for family in ("flatvel-a", "curvevel-a"):
        vel = velocity_batch(family, seed=3, start=0, count=8)[:, 0]
        assert np.all(np.diff(vel, axis=1) >= 0)  # every column is non-decreasing with depth


def test_faults_break_the_layers():
    vel = velocity_batch("flatfault-a", seed=5, start=0, count=4)[:, 0]
    # flat layers without a fault give identical columns; a fault makes them differ
    assert all(not np.all(v == v[:, :1]) for v in vel)
    flat = velocity_batch("flatvel-a", seed=5, start=0, count=4)[:, 0]
    assert all(np.all(v == v[:, :1]) for v in flat)


def test_samples_are_a_function_of_seed_and_index_only():
    a = velocity_batch("curvefault-b", seed=1, start=0, count=6)
    np.testing.assert_array_equal(a[3:], velocity_batch("curvefault-b", seed=1, start=3, count=3))
    assert not np.array_equal(a, velocity_batch("curvefault-b", seed=2, start=0, count=6))


def test_synthesize_layout_naming_and_metadata(tmp_path):
    out = synthesize(tmp_path / "cf", "curvefault-a", samples=4, seed=3, workers=1, samples_per_file=3, progress=False)
    assert sorted(p.name for p in (out / "seismic_data").iterdir()) == ["seis1.npy", "seis2.npy"]
    assert sorted(p.name for p in (out / "velocity_map").iterdir()) == ["vel1.npy", "vel2.npy"]
    meta = json.loads((out / "synth.json").read_text())
    assert (meta["family"], meta["seed"], meta["samples"]) == ("curvefault-a", 3, 4)
    assert {"ubdiff-onnx", "torch", "deepwave", "numpy"} <= set(meta["versions"])
    folder = open_folder(out)
    assert len(folder) == 4
    vel = velocity_batch("curvefault-a", 3, 0, 4)
    np.testing.assert_array_equal(folder.velocity(3), vel[3])
    np.testing.assert_array_equal(folder.seismic(3), forward_model(vel)[3])  # one chunk of 4
    assert [p.name for p in tmp_path.iterdir()] == ["cf"]  # no temporary folder left behind


def test_vel_family_naming(tmp_path):
    out = synthesize(tmp_path / "fv", "flatvel-b", samples=1, seed=0, workers=1, progress=False)
    assert [p.name for p in (out / "seismic_data").iterdir()] == ["data1.npy"]
    assert [p.name for p in (out / "velocity_map").iterdir()] == ["model1.npy"]


def test_worker_processes_give_the_same_data(tmp_path):
    one = synthesize(tmp_path / "one", "flatfault-a", samples=4, seed=9, workers=1, chunk=2, progress=False)
    two = synthesize(tmp_path / "two", "flatfault-a", samples=4, seed=9, workers=2, chunk=2, progress=False)
    for sub, name in (("seismic_data", "seis1.npy"), ("velocity_map", "vel1.npy")):
        np.testing.assert_array_equal(np.load(one / sub / name), np.load(two / sub / name))


@pytest.mark.parametrize("error", [RuntimeError("worker died"), KeyboardInterrupt()])
def test_failure_or_ctrl_c_leaves_nothing(tmp_path, monkeypatch, error):
    real, calls = synth.simulate_chunk, []

    def flaky(task):
        calls.append(task)
        if len(calls) == 2:
            raise error
        return real(task)

    monkeypatch.setattr(synth, "simulate_chunk", flaky)
    with pytest.raises(type(error)):
        synthesize(tmp_path / "out", "flatvel-a", samples=4, seed=0, workers=1, chunk=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        synthesize(out, "flatvel-a", samples=1, workers=1, progress=False)
    assert (out / "keep.txt").exists()
    synthesize(out, "flatvel-a", samples=1, workers=1, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and len(open_folder(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


@pytest.mark.parametrize("kwargs, match", [(dict(family_name="flatvel-c"), "unknown"), (dict(samples=0), "--samples")])
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(family_name="flatvel-a", samples=1, workers=1, progress=False) | kwargs
    with pytest.raises(UserError, match=match):
        synthesize(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()
