"""``sample --layout openfwi``: OpenFWI files, shards byte-identical to one run, resume after kill -9 /
Ctrl-C, refusal of a mismatched folder, Ray actors (local 2-CPU instance), readable by `data check`
and `train`. Tiny fp32 bundle, 10 DDIM steps, 10 samples in files of 4 (4 + 4 + 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ubdiff_onnx._source_tree import python_module_command
from ubdiff_onnx.cli.main import app
from ubdiff_onnx.runtime.multistep import DEFAULT_SAMPLER, DEFAULT_SPACING
from ubdiff_onnx.runtime.shards import FileSpec, parse_shard, plan_files, shard_files

N, PER_FILE, STEPS, SEED = 10, 4, 10, 7


def args(bundle: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", str(bundle), "--layout", "openfwi", "--out", str(out), "-n", str(N), "--per-file", str(PER_FILE),
            "--steps", str(STEPS), "--seed", str(SEED), "--threads", "1", *extra]


def invoke(argv: list[str]):
    return CliRunner().invoke(app, argv)


def files_of(root: Path) -> dict[str, bytes]:
    """Every visible file under ``root`` (relative path → bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_fp32_bundle) -> Path:
    """One single-process run: the bytes every other way of making the same folder must give."""
    out = tmp_path_factory.mktemp("gen") / "reference"
    result = invoke(args(tiny_fp32_bundle, out))
    assert result.exit_code == 0, result.output
    return out


def test_file_plan_and_shards():
    files = plan_files(10, 4)
    assert files == [FileSpec(1, 0, 4), FileSpec(2, 4, 8), FileSpec(3, 8, 10)]
    assert [f.seismic_name for f in files] == ["data1.npy", "data2.npy", "data3.npy"]
    assert [f.number for f in shard_files(plan_files(25, 2), (2, 3))] == [2, 5, 8, 11]
    parts = [shard_files(plan_files(25, 2), (k, 3)) for k in (1, 2, 3)]
    assert sorted(f.number for p in parts for f in p) == list(range(1, 14))
    assert parse_shard("2/5") == (2, 5)


def test_layout_record_and_values(reference, tiny_fp32_bundle, tmp_path):
    seis = np.load(reference / "seismic_data" / "data1.npy")
    vel = np.load(reference / "velocity_map" / "model3.npy")
    assert seis.shape == (4, 5, 1000, 70) and seis.dtype == np.float32
    assert vel.shape == (2, 1, 70, 70) and vel.dtype == np.float32
    rec = json.loads((reference / "generation.json").read_text())
    manifest = json.loads((tiny_fp32_bundle / "manifest.json").read_text())
    assert rec["bundle"]["sha256"] == {k: v["sha256"] for k, v in manifest["components"].items()}
    assert (rec["sampler"], rec["steps"], rec["seed"], rec["per_file"], rec["dtype"]) == (DEFAULT_SAMPLER, STEPS, SEED, PER_FILE, "float32")
    assert rec["sampler_options"] == {"clip_x0": True, "spacing": DEFAULT_SPACING}  # part of the folder's identity
    assert [(f["seismic"], f["velocity"], f["first"], f["stop"]) for f in rec["files"]] == [
        ("seismic_data/data1.npy", "velocity_map/model1.npy", 0, 4), ("seismic_data/data2.npy", "velocity_map/model2.npy", 4, 8),
        ("seismic_data/data3.npy", "velocity_map/model3.npy", 8, 10)]
    # the same samples as the single-file layout (sample i depends only on seed and i)
    npz = tmp_path / "s.npz"
    result = invoke(["sample", str(tiny_fp32_bundle), "-n", str(N), "--steps", str(STEPS), "--seed", str(SEED), "--threads", "1", "--out", str(npz)])
    assert result.exit_code == 0, result.output
    with np.load(npz) as d:
        np.testing.assert_array_equal(d["velocity"][8:], vel)
        np.testing.assert_array_equal(d["seismic"][:4], seis)


def test_data_check_and_train_read_it(reference, tmp_path):
    result = invoke(["data", "check", str(reference)])
    assert result.exit_code == 0, result.output
    assert "3 file pairs, 10 samples" in result.output and "curvefault-a" in result.output  # family from generation.json

    # no --dataset: the normalisation constants come from generation.json's family
    for stage in ("autoencoder", "seismic"):  # velocity maps, then the paired seismic data
        result = invoke(["train", str(tmp_path / "run"), "--data", str(reference), "--preset", "tiny", "--stage", stage, "--device", "cpu",
                         "--epochs", "1", "--steps", "1", "--batch-size", "4", "--threads", "1", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "run" / f"{stage}.pt").is_file()


def test_shards_together_are_byte_identical(reference, tiny_fp32_bundle, tmp_path):
    out = tmp_path / "sharded"
    for k in (3, 1, 2):
        result = invoke(args(tiny_fp32_bundle, out, "--shard", f"{k}/3", "--batch-size", "3"))
        assert result.exit_code == 0, result.output
        if k == 3:
            assert sorted(files_of(out)) == ["generation.json", "seismic_data/data3.npy", "velocity_map/model3.npy"]
    assert files_of(out) == files_of(reference)
    again = invoke(args(tiny_fp32_bundle, out))
    assert again.exit_code == 0 and "0 of 3 file(s) to write (3 complete)" in " ".join(again.output.split())


def test_shards_started_together(reference, tiny_fp32_bundle, tmp_path):
    """A SLURM array starts every shard at once into an empty folder: no shard may refuse the folder
    another one is creating, and the result is still the one run's bytes."""
    out = tmp_path / "together"
    procs = [subprocess.Popen(python_module_command("ubdiff_onnx", *args(tiny_fp32_bundle, out, "--shard", f"{k}/2")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert files_of(out) == files_of(reference)


def test_float16(tiny_fp32_bundle, reference, tmp_path):
    out = tmp_path / "half"
    result = invoke(args(tiny_fp32_bundle, out, "--dtype", "float16", "--shard", "3/3"))
    assert result.exit_code == 0, result.output
    half = np.load(out / "seismic_data" / "data3.npy")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, np.load(reference / "seismic_data" / "data3.npy").astype(np.float16))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


def _wait_for_new_temporary(out: Path, stale: set, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while not set((out / "seismic_data").glob(".*.tmp")) - stale:
        if proc.poll() is not None:
            return False
        assert time.monotonic() < end, "no file was started"
        time.sleep(0.005)
    return True


def _visible_files_are_whole(out: Path) -> None:
    for p in out.rglob("*.npy"):
        arr = np.load(p, mmap_mode="r")
        assert arr.shape[0] in (2, 4) and arr.shape[1:] in ((5, 1000, 70), (1, 70, 70)), p


def test_resume_after_kill_ctrl_c_and_sigterm(reference, tiny_fp32_bundle, tmp_path):
    """kill -9, Ctrl-C and SIGTERM lose at most the file in progress; re-running the command completes
    the folder, byte-identical to an uninterrupted run. One sample per batch, so the runs are slow
    enough to be stopped in the middle."""
    out = tmp_path / "resumed"
    cmd = python_module_command("ubdiff_onnx", *args(tiny_fp32_bundle, out, "--batch-size", "1"))
    env = {**os.environ, "COLUMNS": "200"}

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(out / "seismic_data" / "data1.npy", proc)
    proc.kill()  # SIGKILL: no clean-up code runs
    proc.wait()
    _visible_files_are_whole(out)

    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C; SLURM's scancel / time limit
        stale = set((out / "seismic_data").glob(".*.tmp"))  # left by kill -9, deleted by the next run
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if _wait_for_new_temporary(out, stale, proc):  # a file is being written: stop it there
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        # 130 is the normal exit; once in CI (1 of 3 runs) a Ctrl-C run printed the resume message and
        # still ended by SIGINT (-2) — the clean-up had run, which is what this test is about.
        if proc.returncode in (130, -signal.SIGINT):  # (a signal landing just as a temporary file is created can leave it: the next run deletes it)
            assert "run the same command again to resume" in " ".join(err.split()), err
        else:  # it finished the last file before the signal came
            assert proc.returncode == 0, err
        _visible_files_are_whole(out)

    final = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert final.returncode == 0, final.stderr
    assert files_of(out) == files_of(reference)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "temporary files left behind"


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in result.output, result.output
    return err


def test_mismatched_folder_is_refused(reference, tiny_fp32_bundle, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    assert "another seed" in _error(invoke(args(tiny_fp32_bundle, out)[:-4] + ["--seed", "8", "--threads", "1"]))
    assert "another sampler" in _error(invoke(args(tiny_fp32_bundle, out, "--sampler", "ddim")))
    assert "another per_file" in _error(invoke(args(tiny_fp32_bundle, out)[:8] + ["--per-file", "5"] + args(tiny_fp32_bundle, out)[10:]))
    rec = json.loads((out / "generation.json").read_text())
    rec["bundle"]["sha256"]["unet"] = "0" * 64  # as if made by another bundle
    (out / "generation.json").write_text(json.dumps(rec))
    assert "another bundle" in _error(invoke(args(tiny_fp32_bundle, out)))

    foreign = tmp_path / "foreign"
    (foreign / "seismic_data").mkdir(parents=True)
    np.save(foreign / "seismic_data" / "data1.npy", np.zeros((1, 5, 1000, 70), np.float32))
    assert "has no generation.json" in _error(invoke(args(tiny_fp32_bundle, foreign)))


@pytest.mark.parametrize("extra, message", [
    (["--shard", "0/2"], "--shard: K must be between 1 and N"),
    (["--shard", "3/2"], "--shard: K must be between 1 and N"),
    (["--shard", "a/b"], "--shard: expected K/N"),
    (["--per-file", "0"], "--per-file: expected >= 1"),
    (["--dtype", "int8"], "--dtype: expected float32 or float16"),
])
def test_bad_options(tiny_fp32_bundle, tmp_path, extra, message):
    assert message in _error(invoke(args(tiny_fp32_bundle, tmp_path / "out", *extra)))


def test_npz_layout_refuses_openfwi_options(tiny_fp32_bundle, tmp_path):
    result = invoke(["sample", str(tiny_fp32_bundle), "-n", "1", "--out", str(tmp_path / "a.npz"), "--shard", "1/2"])
    assert "need --layout openfwi" in _error(result)


def tree_of(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``, hidden ones and folders included (folders map to None)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_not_enough_space_leaves_the_folder_as_it_was(reference, tiny_fp32_bundle, tmp_path, monkeypatch):
    """The refusal comes before anything is written: a new --out is not created, an existing empty one
    stays empty, and a partly made one keeps exactly its files (stale temporaries included)."""
    import shutil as _shutil

    from ubdiff_onnx.runtime import openfwi_writer

    monkeypatch.setattr(openfwi_writer.shutil, "disk_usage", lambda p: _shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    line = _error(invoke(args(tiny_fp32_bundle, tmp_path / "new" / "full")))
    assert "this run writes 14.2 MB but its file system has 1.0 MB free" in line
    assert not (tmp_path / "new").exists()

    (tmp_path / "empty").mkdir()
    assert "file system has 1.0 MB free" in _error(invoke(args(tiny_fp32_bundle, tmp_path / "empty")))
    assert list((tmp_path / "empty").iterdir()) == []

    partial = tmp_path / "partial"
    _shutil.copytree(reference, partial)
    (partial / "seismic_data" / "data3.npy").unlink()
    (partial / "velocity_map" / ".model3.npy.123.tmp").write_bytes(b"left by a killed run")
    before = tree_of(partial)
    assert "file system has 1.0 MB free" in _error(invoke(args(tiny_fp32_bundle, partial)))
    assert tree_of(partial) == before


def test_runtime_modules_import_neither_torch_nor_ray():
    code = ("import sys, ubdiff_onnx.runtime.shards, ubdiff_onnx.runtime.openfwi_writer, ubdiff_onnx.runtime.cluster, "
            "ubdiff_onnx.cli.sample_openfwi; bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ray_actors_are_byte_identical(reference, tiny_fp32_bundle, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ubdiff-onnx[cluster]' (CI installs it via the dev extra)")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, logging_level="WARNING")
    try:
        out = tmp_path / "ray"
        result = invoke(args(tiny_fp32_bundle, out, "--ray", "auto"))
        assert result.exit_code == 0, result.output
        assert "Ray: 2 actor(s)" in result.output and f"{N}/{N} samples" in result.output  # every batch reached the bar
    finally:
        ray.shutdown()
    assert files_of(out) == files_of(reference)
