"""Importing the original and refactor layouts: every tensor accounted for, numerics preserved."""

import pytest
import torch

from tests.conftest import max_abs
from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint, save_checkpoint
from ubdiff_onnx.checkpoints.legacy import import_legacy
from ubdiff_onnx.errors import UserError


def test_original_diffusion_file_accounts_for_every_tensor(original_diffusion_file, original_entries):
    ckpt, report = import_legacy(original_diffusion_file, "original", use_ema=True)
    n_alias = sum(1 for e in original_entries if e[4] is not None)
    n_sched = sum(1 for e in original_entries if e[3] == "schedule")
    assert len(report.aliases) == n_alias == 381
    assert len(report.derived) == n_sched == 13
    assert len(report.used) == len(original_entries) - n_alias - n_sched
    assert not report.unused and not report.skipped and not report.missing
    assert report.ema_used and ckpt.ema is not None
    cfg = ckpt.config
    assert (cfg.latent_dim, cfg.unet_dim, tuple(cfg.unet_dim_mults), cfg.seismic_token) == (32, 32, (1, 2, 2, 4), "patch")


def test_plain_state_dict_layout_without_ema(tmp_path, regen, original_entries, parity_original):
    path = tmp_path / "model.pt"
    torch.save(regen.make_checkpoint(original_entries, "model"), path)
    ckpt, report = import_legacy(path, "original")
    assert ckpt.ema is None and not report.ema_used
    with pytest.raises(UserError, match="no EMA"):
        import_legacy(path, "original", use_ema=True)
    m = build_model(ckpt)
    with torch.no_grad():
        v, _ = m.decode(torch.from_numpy(parity_original["z"]))
    assert max_abs(v, parity_original["velocity"]) <= 1e-5


def test_vsnet_file_with_args_imports_with_a_fresh_unet(tmp_path, regen, original_entries, parity_original):
    path = tmp_path / "check_point.pth"
    torch.save(regen.make_checkpoint(original_entries, "jy-vsnet", with_args=True), path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # as the real files: argparse.Namespace inside
    ckpt, report = import_legacy(path, "original")
    assert any("no U-Net" in n for n in report.notes)
    m = build_model(ckpt)
    with torch.no_grad():
        v, s = m.decode(torch.from_numpy(parity_original["z"]))
        enc = m.encoder(torch.from_numpy(parity_original["velocity_in"]))
    assert max_abs(v, parity_original["velocity"]) <= 1e-5
    assert max_abs(s[:, :, ::10, ::7], parity_original["seismic"]) <= 1e-5
    assert max_abs(enc, parity_original["encoded"]) <= 1e-5
    again, _ = import_legacy(path, "original")
    assert all(torch.equal(again.state_dict[k], ckpt.state_dict[k]) for k in ckpt.state_dict)  # fresh U-Net is seeded


def test_refactor_layout_matches_refactor_code(refactor_file, parity_refactor):
    ckpt, report = import_legacy(refactor_file, "refactor")
    assert len(report.used) == 230 and not report.unused
    assert any("ignores the timestep" in n for n in report.notes)
    cfg = ckpt.config
    assert cfg.seismic_token == "cls" and cfg.velocity_decoder_dims[-1] == 512 and cfg.latent_dim == 512
    m = build_model(ckpt)
    d = parity_refactor
    z = torch.from_numpy(d["z"])
    with torch.no_grad():
        v, s = m.decode(z)
        zs = m.seismic_projector(z)
        assert max_abs(m.velocity_projector(z).reshape(2, -1), d["probe_zv"]) <= 1e-5
        assert max_abs(zs.reshape(2, -1), d["probe_zs"]) <= 1e-5
        assert max_abs(m.seismic_decoder.features(zs), d["probe_vit_feat"]) <= 1e-5
        enc = m.encoder(torch.from_numpy(d["velocity_in"]))
    assert max_abs(v, d["velocity"]) <= 1e-5
    assert max_abs(s[:, :, ::10, ::7], d["seismic"]) <= 1e-5
    assert abs(s.double().sum().item() - d["seismic_sum"]) <= 1e-6 * d["seismic_abssum"]
    assert max_abs(enc, d["encoded"]) <= 1e-5


def test_wrong_layout_is_named(refactor_file, original_diffusion_file):
    with pytest.raises(UserError, match="use --layout refactor"):
        import_legacy(refactor_file, "original")
    with pytest.raises(UserError, match="use --layout original"):
        import_legacy(original_diffusion_file, "refactor")
    with pytest.raises(UserError, match="--layout"):
        import_legacy(refactor_file, "bogus")


def test_our_format_round_trip_and_version_check(tmp_path, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    obj = ckpt.to_dict()
    obj["version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(obj, newer)
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(newer)
    ckpt.state_dict = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("unet.final_conv")}
    broken = tmp_path / "broken.pt"
    save_checkpoint(ckpt, broken)
    with pytest.raises(UserError, match="missing"):
        build_model(load_checkpoint(broken), source=str(broken))


def test_refactor_layout_converts_through_the_cli(refactor_file, tmp_path):
    """``convert-checkpoint SRC DST --layout refactor --dataset flatvel-a`` as docs/checkpoints.md shows it."""
    from typer.testing import CliRunner

    from ubdiff_onnx.cli.main import app

    out = tmp_path / "ours.pt"
    result = CliRunner().invoke(app, ["convert-checkpoint", str(refactor_file), str(out), "--layout", "refactor", "--dataset", "flatvel-a"])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.config.latent_dim == 512 and ckpt.meta["dataset"] == "flatvel-a"
