"""Fixtures for the training tests: a small OpenFWI folder and one shortened run of every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ubdiff_onnx.data.velocity_models import velocity_batch


def write_fwi(root: Path, samples: int = 40, seed: int = 0) -> Path:
    """Layered curvefault-a velocity maps (the data package's generator) with random stand-in
    seismic (no wave simulation: the tests exercise training mechanics, not physics)."""
    rng = np.random.default_rng(seed)
    (root / "seismic_data").mkdir(parents=True)
    (root / "velocity_map").mkdir(parents=True)
    np.save(root / "velocity_map" / "vel1.npy", velocity_batch("curvefault-a", seed, 0, samples).astype(np.float32))
    np.save(root / "seismic_data" / "seis1.npy", (rng.standard_normal((samples, 5, 1000, 70)) * 3).astype(np.float32))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process thrash."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_fwi(tmp_path_factory) -> Path:
    return write_fwi(tmp_path_factory.mktemp("fwi") / "curvefault-a")


def short_options(run_dir: Path, data: Path, **kw):
    from ubdiff_onnx.training import Overrides, TrainOptions

    base = dict(run_dir=run_dir, data=data, dataset="curvefault-a", preset="tiny", device="cpu", progress=False, threads=1,
                overrides=Overrides(epochs=1, steps=2, batch_size=8))
    base.update(kw)
    return TrainOptions(**base)


@pytest.fixture(scope="session")
def short_run(tmp_path_factory, small_fwi):
    """Every stage of the tiny preset, shortened to 1 epoch × 2 steps (batch 8)."""
    from ubdiff_onnx.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "all"
    results = train(short_options(run_dir, small_fwi, stage="all"), say=lambda msg: None)
    return run_dir, results
