"""Graph simplification keeps every output and removes the exporter's per-node leftovers."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ubdiff_onnx.config import preset
from ubdiff_onnx.conversion import export_onnx
from ubdiff_onnx.conversion.components import component_modules
from ubdiff_onnx.conversion.simplify import simplify_file_
from ubdiff_onnx.conversion.timestep_table import tabulate_timestep_path_
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.models.unet1d import ResnetBlock


@pytest.fixture(scope="module")
def model():
    """Tiny UB-Diff with non-trivial GroupNorm affines and RMSNorm gains (init makes them 1 and 0,
    which would hide a wrong fold)."""
    torch.manual_seed(0)
    m = UBDiff(preset("tiny")).eval()
    with torch.no_grad():
        for name, p in m.unet.named_parameters():
            if name.endswith((".norm.weight", ".norm.bias", ".gain")):
                p.add_(torch.randn_like(p) * 0.3)
    return m


@pytest.fixture(scope="module")
def unet_raw_and_simplified(model, tmp_path_factory):
    """The tiny U-Net exported as the exporter leaves it and as bundles get it."""
    d = tmp_path_factory.mktemp("simplify")
    module = component_modules(model)["unet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export_onnx, "simplify_file_", lambda path: None)
        export_onnx.export_component("unet", module, model.cfg.latent_dim, d / "raw.onnx")
    export_onnx.export_component("unet", module, model.cfg.latent_dim, d / "simple.onnx")
    return d / "raw.onnx", d / "simple.onnx"


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _run(path, x, t):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "t": t})[0]


def test_unet_export_is_simplified_and_matches_torch(model, unet_raw_and_simplified):
    raw, simple = unet_raw_and_simplified
    before, after = _ops(raw), _ops(simple)
    blocks = sum(isinstance(m, ResnetBlock) for m in model.unet.modules())
    assert before["Expand"] > 0 and after["Expand"] == 0  # F.normalize's expand_as
    assert before["Shape"] >= 2 * blocks and after["Shape"] < before["Shape"] - 2 * blocks + 1
    assert after["BatchNormalization"] == 2 * blocks  # every GroupNorm affine is one node
    assert sum(after.values()) < sum(before.values()) - 4 * blocks
    rng = np.random.default_rng(0)
    for batch in (1, 3):  # the batch axis stays dynamic
        x = rng.standard_normal((batch, 1, model.cfg.latent_dim)).astype(np.float32)
        t = rng.integers(0, model.cfg.timesteps, batch)
        with torch.no_grad():
            ref = model.unet(torch.from_numpy(x), torch.from_numpy(t)).numpy()
        a, b = _run(raw, x, t), _run(simple, x, t)
        assert np.abs(b - a).max() <= 1e-6 * max(1.0, np.abs(a).max())
        assert np.abs(b - ref).max() <= 1e-5


def test_simplify_is_idempotent(unet_raw_and_simplified, tmp_path):
    _, simple = unet_raw_and_simplified
    copy = tmp_path / "again.onnx"
    copy.write_bytes(simple.read_bytes())
    report = simplify_file_(copy)
    assert report.removed_nodes == 0 and report.static_reshapes == 0 and report.affine_batchnorms == 0


def test_timestep_table_absorbs_the_film_groupnorm_affines(model, unet_raw_and_simplified, tmp_path):
    _, simple = unet_raw_and_simplified
    table = tmp_path / "table.onnx"
    table.write_bytes(simple.read_bytes())
    report = tabulate_timestep_path_(table, model.cfg.timesteps)
    blocks = sum(isinstance(m, ResnetBlock) for m in model.unet.modules())
    assert report is not None and report.folded_affines == blocks  # each block1 GroupNorm → table
    assert _ops(table)["BatchNormalization"] == blocks  # block2's GroupNorms stay
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, model.cfg.latent_dim)).astype(np.float32)
    t = np.array([0, 17, 128, model.cfg.timesteps - 1])
    a, b = _run(simple, x, t), _run(table, x, t)
    assert np.abs(a - b).max() <= 2e-3 * np.abs(a).max()  # float16 table entries
