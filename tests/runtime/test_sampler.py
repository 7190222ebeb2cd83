"""The onnxruntime + numpy sampler: parity with the original code and with torch, determinism,
no torch in the process, and one-line errors for broken bundles/flags with no partial .npz."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER
from ubdiff_onnx.runtime.sampler import BundleSampler

runner = CliRunner()


class _ReplayNoise:
    """Stands in for one sample's numpy Generator: returns the recorded noise for each step."""

    def __init__(self, noises):
        self._it = iter(noises)

    def standard_normal(self, shape, dtype=np.float32):
        return next(self._it).reshape(shape).astype(dtype)


def test_ddim16_matches_the_original_code(original_fp32_bundle, parity_original):
    d = parity_original
    smp = BundleSampler(original_fp32_bundle)
    sch = smp.make_scheduler("ddim", 16)
    x0 = smp.denoise(d["ddim_xT"], sch)
    assert np.max(np.abs(x0 - d["ddim_x0"])) <= 1e-4
    v, _ = smp.decode(x0)
    assert np.max(np.abs(v - d["ddim_velocity"])) <= 1e-4


def test_ddpm_matches_the_original_code(original_fp32_bundle, parity_original):
    d = parity_original
    smp = BundleSampler(original_fp32_bundle)
    rngs = [_ReplayNoise([d["ddpm_noise"][t][i] for t in range(255, 0, -1)]) for i in range(2)]
    x0 = smp.denoise(d["ddpm_xT"], smp.make_scheduler("ddpm", None), rngs)
    assert np.max(np.abs(x0 - d["ddpm_x0"])) <= 1e-4


def test_matches_torch_sampler_on_tiny(tiny_fp32_bundle, tiny_checkpoint):
    import torch

    from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint

    model = build_model(load_checkpoint(tiny_checkpoint))
    smp = BundleSampler(tiny_fp32_bundle)
    x_T = np.random.default_rng(0).standard_normal((3, 1, smp.latent_dim)).astype(np.float32)
    ours = smp.denoise(x_T, smp.make_scheduler("ddim", 16))
    ref = model.sample_latents(torch.from_numpy(x_T), 16, "ddim").numpy()
    assert np.max(np.abs(ours - ref)) <= 1e-4


def test_same_seed_same_sample_independent_of_batch_size(tiny_fp32_bundle):
    smp = BundleSampler(tiny_fp32_bundle)
    a = list(smp.sample(3, steps=8, seed=7, batch_size=3, sampler="ddim", eta=0.3))
    b = list(smp.sample(3, steps=8, seed=7, batch_size=1, sampler="ddim", eta=0.3))
    va = np.concatenate([x.velocity for x in a])
    vb = np.concatenate([x.velocity for x in b])
    assert np.array_equal(va, vb)
    c = np.concatenate([x.velocity for x in smp.sample(3, steps=8, seed=8, batch_size=3)])
    assert not np.array_equal(va, c)
    assert va.shape == (3, 1, 70, 70) and a[0].seismic.shape == (3, 5, 1000, 70)
    assert 1000 < va.min() and va.max() < 5000  # denormalised to m/s


def test_cli_sample_writes_the_npz_without_importing_torch(tiny_fp32_bundle, tmp_path):
    out = tmp_path / "s.npz"
    noise = np.random.default_rng(0).standard_normal((2, 1, 32)).astype(np.float32)
    np.save(tmp_path / "xT.npy", noise)
    code = (
        "import sys; from ubdiff_onnx.cli.main import app; "
        f"sys.argv=['ubdiff-onnx','sample',{str(tiny_fp32_bundle)!r},'--num-samples','2','--steps','5','--seed','3',"
        f"'--out',{str(out)!r},'--init-noise',{str(tmp_path / 'xT.npy')!r},'--png',{str(tmp_path / 'png')!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as d:
        assert d["velocity"].shape == (2, 1, 70, 70) and d["seismic"].shape == (2, 5, 1000, 70)
        assert d["latent"].shape == (2, 32) and int(d["seed"]) == 3 and int(d["steps"]) == 5 and str(d["sampler"]) == DEFAULT_SAMPLER
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["sample-0000.png", "sample-0001.png"]
    # the same x_T through the API gives the same latents
    smp = BundleSampler(tiny_fp32_bundle)
    batch = next(smp.sample(2, steps=5, init_noise=noise, batch_size=2))
    with np.load(out) as d:
        assert np.array_equal(batch.latent, d["latent"])


def _copy(bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    return dst


def _err(args, tmp_path, *needles):
    out = tmp_path / "o.npz"
    res = runner.invoke(app, ["sample", *map(str, args), "--out", str(out), "--num-samples", "2", "--steps", "3"] if "--steps" not in args else ["sample", *map(str, args), "--out", str(out), "--num-samples", "2"])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.npz")]


def test_bad_bundles_and_flags(tiny_fp32_bundle, tmp_path):
    b = _copy(tiny_fp32_bundle, tmp_path)
    _err([tmp_path / "nowhere"], tmp_path, "not found")
    _err([b, "--steps", "0"], tmp_path, "--steps")
    _err([b, "--steps", "257"], tmp_path, "--steps")
    _err([b, "--sampler", "euler"], tmp_path, "--sampler")
    _err([b, "--sampler", "dpmpp3m", "--steps", "2"], tmp_path, "--steps 2 is too few for dpmpp3m")
    _err([b, "--sampler", "unipc", "--eta", "0.5"], tmp_path, "--eta applies to ddim only")
    _err([b, "--sampler", "ddim", "--timestep-spacing", "trailing"], tmp_path, "--timestep-spacing applies to")
    _err([b, "--timestep-spacing", "karras"], tmp_path, "--timestep-spacing")
    _err([b, "--sampler", "dpmpp2m", "--steps", "256", "--timestep-spacing", "linspace"], tmp_path, "repeats timesteps")
    bad = np.random.default_rng(0).standard_normal((2, 1, 32)).astype(np.float32)
    bad[1, 0, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    _err([b, "--init-noise", tmp_path / "nan.npy"], tmp_path, "--init-noise", "1 NaN/Inf")
    np.save(tmp_path / "bad.npy", np.zeros((3, 1, 32), np.float32))
    _err([b, "--init-noise", tmp_path / "bad.npy"], tmp_path, "--init-noise", "expected (2, 1, 32)")
    man = json.loads((b / "manifest.json").read_text())
    # a newer format
    (b / "manifest.json").write_text(json.dumps({**man, "format_version": 99}))
    _err([b], tmp_path, "newer")
    # an onnxruntime older than the bundle needs
    (b / "manifest.json").write_text(json.dumps({**man, "min_onnxruntime": "99.0.0"}))
    _err([b], tmp_path, "onnxruntime >= 99.0.0")
    # ONNX inputs that don't match the manifest
    bad_io = json.loads(json.dumps(man))
    bad_io["components"]["unet"]["inputs"] = {"sample": {}, "timestep": {}}
    (b / "manifest.json").write_text(json.dumps(bad_io))
    _err([b], tmp_path, "does not match the manifest")
    (b / "manifest.json").write_text(json.dumps(man))
    # a modified component
    with open(b / "velocity_decoder" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    _err([b], tmp_path, "sha256 mismatch", "velocity_decoder")
    (b / "velocity_decoder" / "model.onnx").unlink()
    _err([b], tmp_path, "missing bundle file")
