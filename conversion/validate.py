"""Compare a bundle against the torch model (like optimum's ``validate_model_outputs``).

Output names and shapes must match (fatal); values are compared and reported as max abs diff
(and cosine similarity). onnxruntime runs in a separate process that never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ubdiff_onnx.conversion.components import component_modules
from ubdiff_onnx.errors import UserError

VALIDATION_TIMESTEPS = (0, 31, 128, 200, 255)


@dataclass
class ComponentCheck:
    component: str
    output: str
    shape: list[int]
    max_abs_diff: float
    cosine: float
    tolerance: float
    ok: bool


def validation_inputs(latent_dim: int, timesteps: int, seed: int = 1234) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.array([min(t, timesteps - 1) for t in VALIDATION_TIMESTEPS], dtype=np.int64)
    return {
        "unet.x": rng.standard_normal((len(ts), 1, latent_dim)).astype(np.float32),
        "unet.t": ts,
        "velocity_decoder.latent": np.clip(rng.standard_normal((2, latent_dim)), -1, 1).astype(np.float32),
        "seismic_decoder.latent": np.clip(rng.standard_normal((2, latent_dim)), -1, 1).astype(np.float32),
    }


def run_bundle_subprocess(bundle_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="ubdiff-validate-") as tmp:
        fin, fout = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(fin, **inputs)
        proc = subprocess.run(
            [sys.executable, "-m", "ubdiff_onnx.runtime.check", str(bundle_dir), str(fin), str(fout)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{bundle_dir}: onnxruntime could not run the exported bundle: {tail}")
        with np.load(fout) as data:
            out = {k: data[k] for k in data.files}
    if bool(out.pop("torch_loaded")):
        raise RuntimeError("the runtime check process imported torch; the Pi runtime must not")
    return out


def torch_reference(model: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mods = component_modules(model)
    with torch.no_grad():
        return {
            "unet.model_output": mods["unet"](torch.from_numpy(inputs["unet.x"]), torch.from_numpy(inputs["unet.t"])).numpy(),
            "velocity_decoder.velocity": mods["velocity_decoder"](torch.from_numpy(inputs["velocity_decoder.latent"])).numpy(),
            "seismic_decoder.seismic": mods["seismic_decoder"](torch.from_numpy(inputs["seismic_decoder.latent"])).numpy(),
        }


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], tolerance: float) -> list[ComponentCheck]:
    checks = []
    for key, ref in reference.items():
        comp, out = key.split(".", 1)
        if key not in got:
            raise UserError(f"validation: the bundle's {comp} has no output {out!r}")
        val = got[key]
        if val.shape != ref.shape:
            raise UserError(f"validation: {comp}.{out} has shape {val.shape}, torch gives {ref.shape}")
        a, b = ref.astype(np.float64).ravel(), val.astype(np.float64).ravel()
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
        checks.append(ComponentCheck(comp, out, list(ref.shape), diff, cos, tolerance, diff <= tolerance))
    return checks


def validate_bundle(model: nn.Module, bundle_dir: Path, tolerance: float = 1e-4) -> list[ComponentCheck]:
    """Run the bundle in a torch-free process and compare with ``model``; write validation.json."""
    inputs = validation_inputs(model.cfg.latent_dim, model.cfg.timesteps)
    got = run_bundle_subprocess(bundle_dir, inputs)
    checks = compare(torch_reference(model, inputs), got, tolerance)
    report = {"timesteps": [int(t) for t in inputs["unet.t"]], "checks": [asdict(c) for c in checks]}
    (Path(bundle_dir) / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    return checks
