"""TorchScript bundles load in a fresh torch-only process, match the torch model, and drive the
same sampling loop (`--runtime torchscript`)."""

import numpy as np
import pytest

from ubdiff_onnx.conversion.bundle import export_bundle
from ubdiff_onnx.runtime.manifest import read_manifest


@pytest.fixture(scope="module")
def ts_bundles(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("ts")
    return {w: export_bundle(tiny_checkpoint, root / w, "torchscript", weights=w) for w in ("fp32", "int8")}


def test_fp32_torchscript_matches_torch(ts_bundles):
    res = ts_bundles["fp32"]
    assert res.manifest["precision"] == "torchscript"
    for c in res.checks:
        assert c.max_abs_diff <= 1e-5, c
    assert all(read_manifest(res.out_dir).component(n)["path"].endswith("model.pt") for n in res.manifest["components"])


def test_int8_torchscript_is_close(ts_bundles):
    res = ts_bundles["int8"]
    assert res.manifest["precision"] == "torchscript-int8"
    assert all(c.cosine >= 0.98 for c in res.checks)


def test_sampler_drives_torchscript_like_onnx(ts_bundles, tiny_fp32_bundle):
    from ubdiff_onnx.runtime.manifest import BundleError
    from ubdiff_onnx.runtime.sampler import BundleSampler

    ts = next(BundleSampler(ts_bundles["fp32"].out_dir, runtime="torchscript").sample(2, steps=6, seed=4))
    ox = next(BundleSampler(tiny_fp32_bundle).sample(2, steps=6, seed=4))
    assert np.max(np.abs(ts.latent - ox.latent)) <= 1e-4
    with pytest.raises(BundleError, match="--runtime torchscript"):
        BundleSampler(ts_bundles["fp32"].out_dir)
