"""``ubdiff-onnx data synth|check|show`` through the real CLI entry point."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.data._folders import write_folder
from ubdiff_onnx.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ds"
    result = runner.invoke(app, ["data", "synth", str(out), "--family", "flatfault-a", "--samples", "4", "--seed", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "4 flatfault-a samples" in result.stdout
    return out


def test_synth_then_check(synth_dir):
    result = runner.invoke(app, ["data", "check", str(synth_dir)])
    assert result.exit_code == 0, result.output
    assert "1 file pairs, 4 samples" in result.stdout
    assert "flatfault-a: data -26.1..50.86" in result.stdout and "seismic 0.000 %" in result.stdout


def test_show_writes_png(synth_dir, tmp_path):
    out = tmp_path / "s.png"
    result = runner.invoke(app, ["data", "show", str(synth_dir), "--index", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_check_with_dataset_name(tmp_path):
    root = write_folder(tmp_path / "real", [("seis1.npy", "vel1.npy")], [2])
    result = runner.invoke(app, ["data", "check", str(root), "--dataset", "curvefault-b"])
    assert result.exit_code == 0, result.output
    assert "curvefault-b" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "check", "{tmp}/missing"], "missing: not a folder"),
        (["data", "check", "{synth}", "--dataset", "marmousi"], "unknown OpenFWI dataset"),
        (["data", "synth", "{tmp}/new", "--family", "saltdome", "--samples", "1"], "--family 'saltdome': unknown"),
        (["data", "synth", "{synth}", "--samples", "1"], "not empty; pass --overwrite"),
        (["data", "show", "{synth}", "--index", "9", "--out", "{tmp}/x.png"], "--index: 9 is out of range"),
        (["data", "show", "{synth}", "--out", "{tmp}/x.jpg"], "should end in .png"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(synth_dir, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, synth=synth_dir) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "new").exists()


def test_nan_in_data_is_reported_with_the_file(tmp_path):
    root = write_folder(tmp_path / "bad", [("data1.npy", "model1.npy")], [2])
    s = np.load(root / "seismic_data" / "data1.npy")
    s[1, 0, 0, 0] = np.nan
    np.save(root / "seismic_data" / "data1.npy", s)
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    assert "data1.npy: sample 1 contains NaN or Inf" in result.stderr
