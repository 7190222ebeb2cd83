"""A distilled student's bundle: the manifest records its sampler and timesteps, ``sample`` uses them
without flags, the numpy step rule matches the torch sampling loop, and other settings are refused
in one line that names what the student was trained for."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app
from ubdiff_onnx.runtime.manifest import BundleError, read_manifest
from ubdiff_onnx.runtime.sampler import BundleSampler

runner = CliRunner()
STEPS, GRID = 4, [255, 191, 127, 63]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_checkpoint):
    """A tiny checkpoint recorded as a finished 4-step student (the runtime does not care how its
    weights were trained), exported FP32 through the real export path."""
    from ubdiff_onnx.checkpoints.format import load_checkpoint, save_checkpoint
    from ubdiff_onnx.conversion.bundle import export_bundle
    from ubdiff_onnx.training.distill import student_record

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.meta.update(student=student_record(STEPS, 256), stage="distill-4", stage_complete=True)
    root = tmp_path_factory.mktemp("student")
    save_checkpoint(ckpt, root / "distill-4.pt")
    export_bundle(root / "distill-4.pt", root / "bundle", "fp32")
    return root / "distill-4.pt", root / "bundle"


def test_manifest_records_the_student(student):
    _, bundle = student
    man = read_manifest(bundle)
    assert man.data["format_version"] == 2  # older runtimes refuse it instead of sampling it wrongly
    assert man.data["student"]["sampler"] == "ddim" and man.data["student"]["timesteps"] == GRID
    assert man.student.steps == STEPS and man.student.timesteps == tuple(GRID)


def test_student_step_rule_matches_the_torch_sampling_loop(student):
    import torch

    from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint

    ckpt_path, bundle = student
    smp = BundleSampler(bundle)
    sch = smp.make_scheduler(None, None)
    assert smp.default_sampler == "ddim" and sch.timesteps.tolist() == GRID
    assert sch.pairs == [(255, 191), (191, 127), (127, 63), (63, -1)]
    model = build_model(load_checkpoint(ckpt_path))
    x_T = np.random.default_rng(0).standard_normal((3, 1, smp.latent_dim)).astype(np.float32)
    ours = smp.denoise(x_T, sch)
    ref = model.diffusion.ddim_sample(model.unet, torch.from_numpy(x_T), STEPS).numpy()
    assert np.max(np.abs(ours - ref)) <= 1e-4
    batch = next(smp.sample(3, init_noise=x_T, batch_size=3))  # no sampler, no steps: the student's
    assert np.array_equal(batch.latent, ours.reshape(3, -1))


def test_cli_sample_uses_the_student_without_flags(student, tmp_path):
    _, bundle = student
    out = tmp_path / "s.npz"
    res = runner.invoke(app, ["sample", str(bundle), "--num-samples", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with np.load(out) as d:
        assert str(d["sampler"]) == "ddim" and int(d["steps"]) == STEPS and str(d["timestep_spacing"]) == ""
    res = runner.invoke(app, ["sample", str(bundle), "--num-samples", "2", "--sampler", "ddim", "--steps", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("flags, named", [
    (["--sampler", "unipc"], "--sampler unipc"),
    (["--steps", "8"], "--steps 8"),
    (["--sampler", "ddim", "--steps", "50"], "--steps 50"),
    (["--sampler", "ddpm"], "--sampler ddpm"),
    (["--eta", "0.5"], "--eta 0.5"),
    (["--sampler", "unipc", "--timestep-spacing", "trailing"], "--timestep-spacing trailing"),
])
def test_settings_it_was_not_trained_for_are_refused_in_one_line(student, tmp_path, flags, named):
    _, bundle = student
    out = tmp_path / "o.npz"
    res = runner.invoke(app, ["sample", str(bundle), "--num-samples", "2", "--out", str(out), *flags])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "4-step distilled student" in err and "trained for --sampler ddim --steps 4 (timesteps 255, 191, 127, 63)" in err
    assert named in err and not out.exists()


def test_a_broken_student_block_is_a_bundle_error(student, tmp_path):
    _, bundle = student
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    man = json.loads((b / "manifest.json").read_text())
    for block, needle in (({**man["student"], "timesteps": [255, 255, 1, 0]}, "decreasing"),
                          ({**man["student"], "sampler": "lcm"}, "'lcm'"),
                          ({k: v for k, v in man["student"].items() if k != "steps"}, "lacks steps")):
        (b / "manifest.json").write_text(json.dumps({**man, "student": block}))
        with pytest.raises(BundleError, match=needle):
            BundleSampler(b)
