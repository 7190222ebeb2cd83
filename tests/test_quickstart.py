"""The newcomer's path end to end, in the --smoke configuration, and its resume behaviour."""

import json
import subprocess
import sys

import numpy as np


def _quickstart(out, data):
    return subprocess.run([sys.executable, "-m", "ubdiff_onnx", "quickstart", str(out), "--smoke", "--data", str(data)],
                          capture_output=True, text=True)


def test_quickstart_smoke_end_to_end_and_resume(tmp_path, small_dataset):
    out = tmp_path / "qs"
    first = _quickstart(out, small_dataset)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (out / "report.md").read_text()
    for section in ("## Training", "## Bundles", "## Judged against real pairs", "## Samples", "## Speed", "## Quality", "## The judge"):
        assert section in report
    assert "QLinearConv" in report
    state = json.loads((out / "quickstart.json").read_text())
    assert all(state[s]["done"] for s in ("data", "train", "export", "sample", "bench", "judge", "evaluate"))
    # the judge trained on fresh pairs and was tested on held-out ones, neither the diffusion model's data
    test = json.loads((out / "judge" / "heldout-test.json").read_text())
    assert not test["seen_in_training"] and test["data"]["tested"] == 6
    ev = json.loads((out / "evaluation" / "evaluate.json").read_text())
    assert ev["judge"]["pairwise_ssim"]["real_ceiling"]["n"] == 6 and ev["data"]["path"].endswith("heldout-data")
    assert "pairwise SSIM (OpenFWI)" in report
    for kind in ("fp32", "qdq", "fp32-qat", "qdq-ptq", "torchscript"):
        assert (out / "bundles" / kind / "manifest.json").is_file()
    qdq = json.loads((out / "bundles" / "qdq" / "manifest.json").read_text())
    assert qdq["quantization"]["method"].startswith("quantization-aware training")  # from the QAT scales
    assert "### QAT vs post-training quantization" in report
    with np.load(out / "samples" / "samples.npz") as d:
        assert d["velocity"].shape == (2, 1, 70, 70) and d["seismic"].shape == (2, 5, 1000, 70)
    assert (out / "bench" / "bench.json").is_file() and (out / "evaluation" / "evaluate.json").is_file()
    assert list((out / "samples" / "png").glob("*.png"))

    # an interruption after the benchmark: the evaluate step is not recorded as done
    del state["evaluate"]
    (out / "quickstart.json").write_text(json.dumps(state))
    again = _quickstart(out, small_dataset)
    assert again.returncode == 0, again.stderr[-3000:]
    for step in ("data", "train", "export", "sample", "bench", "judge"):
        assert f"{step}: " in again.stderr and "skipped (already done)" in again.stderr.split(f"] {step}:")[1].splitlines()[0]
    assert "evaluate" in again.stderr and "running" in again.stderr.split("] evaluate:")[1].splitlines()[0]
