"""Compare a bundle against the torch model (like optimum's ``validate_model_outputs``).

Output names and shapes must match (fatal); values are compared and reported as max abs diff
(and cosine similarity). onnxruntime runs in a separate process that never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ubdiff_onnx.conversion.components import component_modules
from ubdiff_onnx._source_tree import python_module_command
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
    gate: bool = True
    """False: reported only (a quantized U-Net's raw output, see ``denoised_estimates``)."""


def validation_inputs(model: nn.Module, seed: int = 1234) -> dict[str, np.ndarray]:
    """In-distribution inputs: decoder latents are the model's own DDIM samples (what the decoders
    see when sampling), U-Net inputs are those latents noised to the validation timesteps."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x0 = model.sample_latents(torch.randn(4, 1, cfg.latent_dim, generator=g), min(10, cfg.timesteps), "ddim")
        ts = torch.tensor([min(t, cfg.timesteps - 1) for t in VALIDATION_TIMESTEPS], dtype=torch.long)
        base = x0[torch.arange(len(ts)) % x0.shape[0]]
        x_t = model.diffusion.q_sample(base, ts, torch.randn(base.shape, generator=g))
    latents = x0.reshape(x0.shape[0], -1).numpy()
    return {
        "unet.x": x_t.numpy().astype(np.float32),
        "unet.t": ts.numpy(),
        "velocity_decoder.latent": latents,
        "seismic_decoder.latent": latents,
    }


def run_bundle_subprocess(bundle_dir: Path, inputs: dict[str, np.ndarray], torchscript: bool = False) -> dict[str, np.ndarray]:
    """ONNX bundles run in a process without torch; TorchScript ones in a process with torch only."""
    module = "ubdiff_onnx.conversion.ts_check" if torchscript else "ubdiff_onnx.runtime.check"
    with tempfile.TemporaryDirectory(prefix="ubdiff-validate-") as tmp:
        fin, fout = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(fin, **inputs)
        proc = subprocess.run(python_module_command(module, bundle_dir, fin, fout), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{bundle_dir}: {'torch.jit' if torchscript else 'onnxruntime'} could not run the exported bundle: {tail}")
        with np.load(fout) as data:
            out = {k: data[k] for k in data.files}
    if torchscript:
        foreign = str(out.pop("foreign_modules"))
        if foreign:
            raise RuntimeError(f"the TorchScript check needed ubdiff-onnx modules: {foreign}")
    elif bool(out.pop("torch_loaded")):
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


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], tolerance: float | dict[str, float],
            by_cosine: bool = False) -> list[ComponentCheck]:
    """``tolerance`` may differ per component (a dict by component name)."""
    checks = []
    for key, ref in reference.items():
        comp, out = key.split(".", 1)
        tol = tolerance[comp] if isinstance(tolerance, dict) else tolerance
        if key not in got:
            raise UserError(f"validation: the bundle's {comp} has no output {out!r}")
        val = got[key]
        if val.shape != ref.shape:
            raise UserError(f"validation: {comp}.{out} has shape {val.shape}, torch gives {ref.shape}")
        a, b = ref.astype(np.float64).ravel(), val.astype(np.float64).ravel()
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
        ok = cos >= tol if by_cosine else diff <= tol
        checks.append(ComponentCheck(comp, out, list(ref.shape), diff, cos, tol, ok))
    return checks


def denoised_estimates(model: nn.Module, model_output: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """x̂0 = what the sampler makes of one U-Net output (unclipped), per sample at its own t.

    Quantized U-Nets are judged on x̂0, not on the raw output: with v-prediction the output at
    t = 0 is ε guessed from an almost clean x, scaled by √(1-ᾱ₀) ≈ 0.014 before it reaches the
    sample. There the fake-quant model is chaotic — a 1e-3 input perturbation moves its own output
    to cosine 0.995 (trained tiny QAT U-Net) — so no integer kernel can match it, while x̂0 (and the
    DDIM samples) agree to ≥ 0.998. The raw output is still reported.
    """
    from ubdiff_onnx.runtime.schedule import make_schedule
    from ubdiff_onnx.runtime.schedulers import predict_x0_eps

    cfg = model.cfg
    tables = make_schedule(cfg.beta_schedule, cfg.timesteps, cfg.objective, cfg.cosine_s)
    return np.stack([predict_x0_eps(tables, cfg.objective, model_output[i], int(t[i]), x[i], clip=False)[0]
                     for i in range(len(t))]).astype(np.float32)


def with_denoised(model: nn.Module, outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x0 = denoised_estimates(model, outputs["unet.model_output"], inputs["unet.x"], inputs["unet.t"])
    out: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        out[key] = value
        if key == "unet.model_output":
            out["unet.x0_estimate"] = x0
    return out


PTQ_MIN_COSINE = 0.98
"""Post-training INT8 against the FP32 torch model: below this the quantized bundle is broken,
not merely approximate."""
QAT_MIN_COSINE = 0.995
"""A QAT bundle against its own fake-quant torch model (issue 5): the graph must be what was trained."""


def validate_bundle(model: nn.Module, bundle_dir: Path, tolerance: float = 1e-4, quantized: bool = False,
                    torchscript: bool = False, min_cosine: float | dict[str, float] = PTQ_MIN_COSINE,
                    fp32_model: nn.Module | None = None) -> list[ComponentCheck]:
    """Run the bundle in a torch-free process and compare with ``model``; write validation.json.

    FP32 bundles must match to ``tolerance`` (max abs diff); quantized ones are judged by cosine
    similarity (``min_cosine``), the U-Net on its denoised estimate (``denoised_estimates``), and
    their max abs error is reported. ``fp32_model`` (the float
    twin of a fake-quant ``model``) adds the error against FP32 to the report, not to the verdict.
    """
    inputs = validation_inputs(model)
    got = run_bundle_subprocess(bundle_dir, inputs, torchscript)
    ref = torch_reference(model, inputs)
    if quantized:
        ref, got = with_denoised(model, ref, inputs), with_denoised(model, got, inputs)
    checks = compare(ref, got, min_cosine if quantized else tolerance, by_cosine=quantized)
    if quantized:
        for c in checks:
            c.gate = c.output != "model_output"
    report = {"timesteps": [int(t) for t in inputs["unet.t"]], "checks": [asdict(c) for c in checks]}
    if fp32_model is not None:
        fp32_ref = with_denoised(fp32_model, torch_reference(fp32_model, inputs), inputs)
        report["against_fp32"] = [asdict(c) for c in compare(fp32_ref, got, 0.0, by_cosine=True)]
    (Path(bundle_dir) / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    return checks


def failure_message(checks: list[ComponentCheck], *, quantized: bool, from_qat: bool = False,
                    weight_range: str | None = None) -> str:
    """One line for a failed validation: the failing outputs, worst first, and what to try."""
    bad = sorted((c for c in checks if c.gate and not c.ok), key=(lambda c: c.cosine) if quantized else (lambda c: -c.max_abs_diff))
    if quantized:
        against = "its fake-quant (QAT) torch model" if from_qat else "the torch model"
        worst = ", ".join(f"{c.component}.{c.output} cosine {c.cosine:.4f} < {c.tolerance:g}" for c in bad)
        passed = ", ".join(f"{c.component}.{c.output} {c.cosine:.4f}" for c in checks if c.gate and c.ok)
        if weight_range == "full":
            hint = ("full-range int8 weights saturate on x86 CPUs without VNNI: export with --weight-range reduced "
                    "(the default)")
        elif from_qat:
            hint = ("the graph differs from what QAT trained: see validation.json (against_fp32) and the manifest's "
                    "quantization.qat report (calibrated_at_export, shared_tensors); or compare with --calibrate DATA (PTQ)")
        else:
            hint = ("post-training INT8 loses too much here: train the QAT stages (train --stage qat-decoders, "
                    "qat-diffusion) and export from them, or calibrate on more data; onnxruntime.quantization.qdq_loss_debug "
                    "shows which tensors lose it")
        return f"validation failed against {against}: {worst}" + (f" (passed: {passed})" if passed else "") + f"; try: {hint}"
    worst = ", ".join(f"{c.component}.{c.output} differs from torch by {c.max_abs_diff:.3g} > {c.tolerance:g}" for c in bad)
    return f"validation failed: {worst}; try: --tolerance if the difference is float rounding, else report the export as a bug"


def against_fp32(bundle_dir: Path) -> dict[str, dict[str, float]]:
    """The ``against_fp32`` part of a bundle's validation.json (empty when there is none)."""
    report = json.loads((Path(bundle_dir) / "validation.json").read_text())
    return {f"{c['component']}.{c['output']}": {"max_abs_diff": c["max_abs_diff"], "cosine": c["cosine"]}
            for c in report.get("against_fp32", [])}
