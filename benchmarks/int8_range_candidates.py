"""Which bits to give up so that INT8 is exact on x86 without VNNI: weights or activations?

Simulates the three schemes with our fake-quant modules on a trained float checkpoint (no QAT
training, calibrated like PTQ: observers on encoder latents of real velocity maps and noised
latents at uniform timesteps) and reports the export validation's cosines against the float model
(U-Net on x̂0, as ``conversion/validate.py`` judges it):

- ``w8a8``: int8 weights [-128, 127], uint8 activations [0, 255] (saturates without VNNI);
- ``w7a8``: weights [-64, 64] (onnxruntime's reduce_range), activations [0, 255] (max pair 32640);
- ``w8a7``: weights [-128, 127], activations [0, 127] (max pair 32512).

Usage: python benchmarks/int8_range_candidates.py CHECKPOINT DATA_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from ubdiff_onnx import qat
from ubdiff_onnx.checkpoints.format import build_model, load_checkpoint
from ubdiff_onnx.conversion.bundle import calibration_velocities, dataset_block
from ubdiff_onnx.conversion.validate import compare, torch_reference, validation_inputs, with_denoised
from ubdiff_onnx.qat import fake_quant

SCHEMES = {"w8a8": ("full", 255), "w7a8": ("reduced", 255), "w8a7": ("full", 127)}


def fake_quant_twin(model, weight_range: str, act_qmax: int, latents: torch.Tensor, seed: int):
    m = copy.deepcopy(model).eval()
    qat.prepare_qat_(m, ["velocity", "seismic", "unet"], qat.QATConfig(weight_range=weight_range))
    qat.begin_calibration(m)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.decode(latents)
        for _ in range(4):
            t = torch.randint(0, m.cfg.timesteps, (len(latents),), generator=g)
            x = m.diffusion.q_sample(latents[:, None], t, torch.randn(len(latents), 1, latents.shape[1], generator=g))
            m.unet(x, t)
    fake_quant.ACT_QMAX = act_qmax  # the module reads it at calibration end and in every forward
    qat.end_calibration(m)
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    ckpt = load_checkpoint(a.checkpoint)
    model = build_model(ckpt, source=str(a.checkpoint)).eval()
    vel = calibration_velocities(a.data, dataset_block(ckpt, None), 32, a.seed)
    with torch.no_grad():
        latents = model.encode(torch.from_numpy(vel))
    inputs = validation_inputs(model)
    ref = with_denoised(model, torch_reference(model, inputs), inputs)
    print(f"{a.checkpoint}: fake-quant schemes against the float model (cosine; U-Net on x̂0)")
    print("| scheme | weights | activations | max pair sum | " + " | ".join(k for k in ref if not k.endswith("model_output")) + " |")
    original = fake_quant.ACT_QMAX
    try:
        for name, (wr, aq) in SCHEMES.items():
            fq = fake_quant_twin(model, wr, aq, latents, a.seed)
            got = with_denoised(fq, torch_reference(fq, inputs), inputs)
            fake_quant.ACT_QMAX = original
            cos = {f"{c.component}.{c.output}": c.cosine for c in compare(ref, got, 0.0, by_cosine=True)}
            lo, hi = fake_quant.WEIGHT_RANGES[wr]
            pair = 2 * aq * max(-lo, hi)
            print(f"| {name} | [{lo}, {hi}] | [0, {aq}] | {pair} | "
                  + " | ".join(f"{v:.5f}" for k, v in cos.items() if not k.endswith("model_output")) + " |")
    finally:
        fake_quant.ACT_QMAX = original


if __name__ == "__main__":
    main()
