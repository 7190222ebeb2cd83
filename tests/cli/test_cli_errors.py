"""Bad input → one clear line on stderr, a non-zero exit, and nothing half-written."""

import subprocess
import sys

import numpy as np
import torch
from typer.testing import CliRunner

from ubdiff_onnx.cli.main import app

runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _one_line_error(result, *needles):
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, err


def test_help_lists_and_describes_every_command():
    result = _run("--help")
    assert result.exit_code == 0
    for cmd in ("convert-checkpoint", "export", "data"):
        assert cmd in result.stdout
    for cmd in (["convert-checkpoint"], ["export"], ["data", "synth"], ["data", "show"]):
        sub = _run(*cmd, "--help")
        assert sub.exit_code == 0, cmd
        assert "--" in sub.stdout and "Usage" in sub.stdout


def test_convert_missing_file(tmp_path):
    dst = tmp_path / "out.pt"
    _one_line_error(_run("convert-checkpoint", tmp_path / "nope.pt", dst, "--layout", "original"), "nope.pt", "not found")
    assert not dst.exists()


def test_convert_truncated_checkpoint(tmp_path, refactor_file):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(refactor_file.read_bytes()[: 1 << 20])
    dst = tmp_path / "out.pt"
    _one_line_error(_run("convert-checkpoint", bad, dst, "--layout", "refactor"), "truncated.pt", "corrupt")
    assert list(tmp_path.iterdir()) == [bad]


def test_convert_garbage_file(tmp_path):
    # random bytes make the restricted unpickler fail in many ways (IndexError, KeyError, ...): try many
    rng = np.random.default_rng(0)
    bad = tmp_path / "garbage.pt"
    for _ in range(40):
        bad.write_bytes(rng.bytes(4096))
        _one_line_error(_run("convert-checkpoint", bad, tmp_path / "o.pt", "--layout", "original"), "garbage.pt")


def test_convert_checkpoint_of_another_model(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}}, other)
    _one_line_error(_run("convert-checkpoint", other, tmp_path / "o.pt", "--layout", "original"), "resnet.pt", "not a UB-Diff checkpoint")
    assert not (tmp_path / "o.pt").exists()


def test_convert_wrong_and_unknown_layout(tmp_path, refactor_file):
    _one_line_error(_run("convert-checkpoint", refactor_file, tmp_path / "o.pt", "--layout", "original"), "--layout refactor")
    _one_line_error(_run("convert-checkpoint", refactor_file, tmp_path / "o.pt", "--layout", "newest"), "--layout")
    assert not (tmp_path / "o.pt").exists()


def test_convert_unwritable_output(tmp_path, refactor_file):
    _one_line_error(_run("convert-checkpoint", refactor_file, "/proc/ubdiff-onnx-test.pt", "--layout", "refactor"), "/proc")
    _one_line_error(_run("convert-checkpoint", refactor_file, tmp_path / "missing" / "o.pt", "--layout", "refactor"), "does not exist")


def test_convert_refuses_to_overwrite(tmp_path, refactor_file):
    dst = tmp_path / "o.pt"
    dst.write_text("keep me")
    _one_line_error(_run("convert-checkpoint", refactor_file, dst, "--layout", "refactor"), "--overwrite")
    assert dst.read_text() == "keep me"


def test_cli_export_writes_a_validated_bundle_atomically(tiny_fp32_bundle, tiny_checkpoint):
    out = tiny_fp32_bundle  # made by `ubdiff-onnx export` (tests/conftest.py)
    assert (out / "manifest.json").is_file() and (out / "validation.json").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny-fp32"]  # no staging leftovers
    # a second export refuses the non-empty folder, and leaves it untouched
    before = (out / "manifest.json").read_bytes()
    _one_line_error(_run("export", tiny_checkpoint, out), "--overwrite")
    assert (out / "manifest.json").read_bytes() == before


def test_export_bad_inputs(tmp_path, tiny_checkpoint, refactor_file):
    _one_line_error(_run("export", tiny_checkpoint, tmp_path / "b", "--format", "fp64"), "--format")
    _one_line_error(_run("export", refactor_file, tmp_path / "b"), "not an ubdiff-onnx checkpoint", "convert-checkpoint")
    _one_line_error(_run("export", tmp_path / "none.pt", tmp_path / "b"), "none.pt")
    _one_line_error(_run("export", tiny_checkpoint, "/proc/ubdiff-onnx-bundle"), "/proc")
    _one_line_error(_run("export", tiny_checkpoint, tmp_path / "b", "--dataset", "marsvel-z"), "marsvel-z")
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_real_console_script_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ubdiff_onnx", "convert-checkpoint", str(tmp_path / "x.pt"), str(tmp_path / "y.pt"), "--layout", "original"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.pt'}: file not found"]
