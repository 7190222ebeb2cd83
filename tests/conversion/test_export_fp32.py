"""The FP32 bundle reproduces the ORIGINAL code's outputs through onnxruntime (≤ 1e-5)."""

import json

import numpy as np
import pytest

from tests.conftest import max_abs
from ubdiff_onnx.runtime.manifest import COMPONENTS, read_manifest, sha256_file
from ubdiff_onnx.runtime.sessions import make_session

TOL = 1e-5


@pytest.fixture(scope="module")
def bundle(original_fp32_bundle):
    return original_fp32_bundle


def test_manifest_describes_the_bundle(bundle):
    man = read_manifest(bundle)
    man.verify_files()
    d = man.data
    assert d["precision"] == "fp32" and d["latent_dim"] == 32 and d["objective"] == "pred_v"
    assert d["schedule"]["timesteps"] == 256 and len(d["schedule"]["betas"]) == 256
    assert d["dataset"]["name"] == "curvefault-a" and d["dataset"]["data_min"] == -26.48
    assert set(d["components"]) == set(COMPONENTS)
    for name in COMPONENTS:
        comp = d["components"][name]
        assert comp["path"] == f"{name}/model.onnx"
        assert comp["sha256"] == sha256_file(bundle / comp["path"])
    assert list(d["components"]["unet"]["inputs"]) == ["x", "t"]
    assert d["validation"]["seismic_decoder.seismic"]["max_abs_diff"] < 1e-4
    assert json.loads((bundle / "validation.json").read_text())["checks"]


def test_onnx_components_match_the_original_code(bundle, parity_original):
    d = parity_original
    man = read_manifest(bundle)
    vel = make_session(man.component_path("velocity_decoder")).run(None, {"latent": d["z"]})[0]
    assert max_abs(vel, d["velocity"]) <= TOL
    seis = make_session(man.component_path("seismic_decoder")).run(None, {"latent": d["z"]})[0]
    assert seis.shape == (2, 5, 1000, 70)
    assert max_abs(seis[:, :, ::10, ::7], d["seismic"]) <= TOL
    s64 = seis.astype(np.float64)
    assert abs(s64.sum() - d["seismic_sum"]) <= 1e-6 * d["seismic_abssum"]
    assert abs(np.abs(s64).sum() - d["seismic_abssum"]) <= 1e-6 * d["seismic_abssum"]
    unet = make_session(man.component_path("unet"))
    for t in (0, 31, 200, 255):
        out = unet.run(None, {"x": d["unet_x"], "t": np.full((2,), t, dtype=np.int64)})[0]
        assert max_abs(out, d[f"unet_t{t}"]) <= TOL, t


def test_dynamic_batch_axis(bundle):
    man = read_manifest(bundle)
    unet = make_session(man.component_path("unet"))
    for b in (1, 3, 7):
        out = unet.run(None, {"x": np.zeros((b, 1, 32), np.float32), "t": np.arange(b, dtype=np.int64)})[0]
        assert out.shape == (b, 1, 32)


def test_refactor_decoders_export_and_match(tmp_path, refactor_file, parity_refactor):
    """Decoder graphs of a refactor-layout import (its U-Net is not usable, so only the decoders)."""
    from ubdiff_onnx.checkpoints.format import build_model
    from ubdiff_onnx.checkpoints.legacy import import_legacy
    from ubdiff_onnx.conversion.components import component_modules
    from ubdiff_onnx.conversion.export_onnx import export_component

    ckpt, _ = import_legacy(refactor_file, "refactor")
    model = build_model(ckpt)
    mods = component_modules(model)
    d = parity_refactor
    for name, key in (("velocity_decoder", "velocity"), ("seismic_decoder", "seismic")):
        path = tmp_path / name / "model.onnx"
        export_component(name, mods[name], model.cfg.latent_dim, path)
        out = make_session(path).run(None, {"latent": d["z"]})[0]
        ref = d[key]
        got = out if key == "velocity" else out[:, :, ::10, ::7]
        assert max_abs(got, ref) <= TOL, name
        del out
