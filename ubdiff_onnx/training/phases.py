"""What each phase trains, on which data, with which loss, and how it is validated.

The generic loop (:mod:`.loop`) owns optimisation, checkpoints and distribution; a :class:`Phase`
only says which sub-modules learn (everything else is frozen *and* in eval mode, so no BatchNorm
statistics or observers of a frozen path move), what a batch is, and what the loss is.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.runtime.schedule import ddim_timesteps
from ubdiff_onnx.training.data import RunData, TensorDictDataset, full_batches, iterate, stable_seed
from ubdiff_onnx.training.distributed import Dist
from ubdiff_onnx.training.metrics import ssim

NEVER_TRAINED = ("seismic_decoder.vit.head",)  # the unused ViT classifier (kept for lossless imports)


def l1_l2(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The original's criterion: L1 + L2 with unit weights."""
    l1 = F.l1_loss(pred, target)
    l2 = F.mse_loss(pred, target)
    return l1 + l2, {"l1": l1.item(), "l2": l2.item()}


@torch.no_grad()
def encode_all(model: UBDiff, dataset: Dataset, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Latents (N,1,L) of every velocity map of ``dataset`` with the frozen, eval-mode encoder."""
    was_training = model.encoder.training
    model.encoder.eval()
    out = [model.encode(b["velocity"].to(device)).cpu() for b in iterate(dataset, full_batches(len(dataset), batch_size))]
    model.encoder.train(was_training)
    return torch.cat(out)[:, None, :]


class Phase:
    name = ""
    trainable: tuple[str, ...] = ()
    qat_components: tuple[str, ...] = ()
    uses_ema = False

    def train_data(self, data: RunData, model: UBDiff, device: torch.device) -> Dataset:
        raise NotImplementedError

    def val_data(self, data: RunData, model: UBDiff, device: torch.device) -> Dataset:
        raise NotImplementedError

    def inputs(self, batch: dict[str, torch.Tensor], model: UBDiff, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Everything random a step needs, drawn here (outside DDP's forward) from ``gen``."""
        return batch

    def loss(self, model: UBDiff, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def calibration_forward(self, model: UBDiff, batch: dict[str, torch.Tensor], gen: torch.Generator) -> None:
        self.loss(model, self.inputs(batch, model, gen))

    @torch.no_grad()
    def validate(self, model: UBDiff, val: Dataset, d: Dist, batch_size: int, seed: int, workers: int = 0) -> dict[str, float]:
        """Sample-weighted means over the held-out split, summed across ranks."""
        totals: dict[str, float] = {}
        count = 0
        for k, batch in enumerate(iterate(val, full_batches(len(val), batch_size, d.rank, d.world), workers)):
            batch = {key: v.to(d.device) for key, v in batch.items()}
            # keyed by the phase type, not its name: float and QAT phases see the same draws
            gen = torch.Generator(d.device).manual_seed(stable_seed(seed, "val", type(self).__name__, d.rank, k))
            n = next(iter(batch.values())).shape[0]
            for key, value in self.val_metrics(model, batch, gen).items():
                totals[key] = totals.get(key, 0.0) + value * n
            count += n
        keys = sorted(totals)
        packed = d.sum_(torch.tensor([totals[k] for k in keys] + [float(count)], dtype=torch.float64, device=d.device))
        return {f"val_{k}": float(packed[i] / packed[-1]) for i, k in enumerate(keys)}

    def val_metrics(self, model: UBDiff, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, float]:
        loss, logs = self.loss(model, self.inputs(batch, model, gen))
        return {"loss": loss.item(), **logs}


class VelocityPhase(Phase):
    """Encoder + velocity decoder (``autoencoder``), or the quantized velocity path (``qat-velocity``)."""

    def __init__(self, name: str, train_encoder: bool) -> None:
        self.name = name
        self.train_encoder = train_encoder
        self.trainable = (("encoder",) if train_encoder else ()) + ("velocity_projector", "velocity_decoder")
        self.qat_components = () if train_encoder else ("velocity",)

    def train_data(self, data, model, device):
        return data.dataset("train", seismic=False)

    def val_data(self, data, model, device):
        return data.dataset("val", seismic=False)

    def loss(self, model, inputs):
        v = inputs["velocity"]
        if self.train_encoder:
            z = model.encode(v)
        else:
            with torch.no_grad():
                z = model.encode(v)
        return l1_l2(model.decode_velocity(z), v)

    def val_metrics(self, model, batch, gen):
        v = batch["velocity"]
        pred = model.decode_velocity(model.encode(v))
        loss, logs = l1_l2(pred, v)
        return {"loss": loss.item(), **logs, "ssim": ssim(pred / 2 + 0.5, v / 2 + 0.5).item()}


class SeismicPhase(Phase):
    """Seismic projector + decoder on the paired subset, encoder frozen (float or quantized)."""

    def __init__(self, name: str, quantized: bool) -> None:
        self.name = name
        self.trainable = ("seismic_projector", "seismic_decoder")
        self.qat_components = ("seismic",) if quantized else ()

    def train_data(self, data, model, device):
        return data.dataset("paired", seismic=True)

    def val_data(self, data, model, device):
        return data.dataset("val", seismic=True)

    def loss(self, model, inputs):
        with torch.no_grad():
            z = model.encode(inputs["velocity"])
        return l1_l2(model.decode_seismic(z), inputs["seismic"])


class DiffusionPhase(Phase):
    """The U-Net on frozen-encoder latents (weighted pred_v loss); float with EMA, or quantized."""

    def __init__(self, name: str, quantized: bool) -> None:
        self.name = name
        self.trainable = ("unet",)
        self.qat_components = ("unet",) if quantized else ()
        self.uses_ema = not quantized
        self.sample_steps = 50

    def train_data(self, data, model, device):
        return TensorDictDataset({"x0": encode_all(model, data.dataset("train", seismic=False), device)})

    def val_data(self, data, model, device):
        """Held-out latents, repeated so a small split still sees >= 1024 (x0, t, noise) draws: a
        diffusion loss from one random t per sample is too noisy to compare epochs or stages."""
        x0 = encode_all(model, data.dataset("val", seismic=False), device)
        return TensorDictDataset({"x0": x0.repeat(max(1, math.ceil(1024 / len(x0))), 1, 1)})

    def inputs(self, batch, model, gen):
        x0 = batch["x0"]
        t = torch.randint(0, model.diffusion.num_timesteps, (x0.shape[0],), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        return {"x0": x0, "t": t, "noise": noise}

    def loss(self, model, inputs):
        loss = model.diffusion.loss(model.unet, inputs["x0"], inputs["t"], inputs["noise"])
        return loss, {}

    def check_steps(self, cfg) -> int:
        """DDIM steps of the end-of-stage sample check."""
        return cfg.sample_steps

    def calibration_forward(self, model, batch, gen):
        """Observers see x_t at timesteps drawn uniformly from the DDIM trajectory the bundle samples
        with: activation ranges drift with t, and ORT needs one constant scale for all of them."""
        x0 = batch["x0"]
        times = torch.tensor([t for t, _ in ddim_timesteps(model.diffusion.num_timesteps, self.sample_steps)], device=x0.device)
        t = times[torch.randint(0, len(times), (x0.shape[0],), generator=gen, device=x0.device)]
        noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        model.unet(model.diffusion.q_sample(x0, t, noise), t)


def phase(name: str) -> Phase:
    if name.startswith(("distill-", "qat-distill-")):
        from ubdiff_onnx.training.distill import DistillPhase

        return DistillPhase(name)
    return {
        "autoencoder": lambda: VelocityPhase("autoencoder", train_encoder=True),
        "seismic": lambda: SeismicPhase("seismic", quantized=False),
        "diffusion": lambda: DiffusionPhase("diffusion", quantized=False),
        "qat-velocity": lambda: VelocityPhase("qat-velocity", train_encoder=False),
        "qat-seismic": lambda: SeismicPhase("qat-seismic", quantized=True),
        "qat-diffusion": lambda: DiffusionPhase("qat-diffusion", quantized=True),
    }[name]()


def freeze_except(model: nn.Module, trainable: tuple[str, ...]) -> list[nn.Parameter]:
    """requires_grad only under ``trainable`` prefixes; returns those parameters (quantizer scales
    included). Modes are set separately by :func:`set_modes`."""
    params = []
    for name, p in model.named_parameters():
        on = name.startswith(tuple(f"{t}." for t in trainable)) and not name.startswith(NEVER_TRAINED)
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


def set_modes(model: nn.Module, trainable: tuple[str, ...], training: bool) -> None:
    """Everything eval, then the trainable sub-modules train (if ``training``)."""
    model.eval()
    if training:
        for name in trainable:
            model.get_submodule(name).train()


class PhaseModule(nn.Module):
    """What DDP wraps: forward(inputs) → (loss, logs) for one phase."""

    def __init__(self, model: UBDiff, ph: Phase) -> None:
        super().__init__()
        self.model = model
        self.phase = ph

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.phase.loss(self.model, inputs)
