"""A tiny UB-Diff whose BatchNorms hold non-trivial statistics, and its calibrated QAT twin."""

from __future__ import annotations

import copy

import pytest
import torch

from ubdiff_onnx import qat
from ubdiff_onnx.config import preset
from ubdiff_onnx.models.ubdiff import UBDiff


def latents(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 32, generator=gen) * 2 - 1  # the encoder's tanh range


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def float_model(one_thread) -> UBDiff:
    torch.manual_seed(0)
    model = UBDiff(preset("tiny")).train()
    with torch.no_grad():
        for _ in range(5):  # move the BatchNorm running statistics away from (0, 1)
            model.decode(latents(16, torch.Generator().manual_seed(_)))
    return model.eval()


def calibrate(model: UBDiff, batches: int = 6, seed: int = 1) -> None:
    qat.begin_calibration(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(batches):
            model.decode(latents(16, g))
            model.unet(torch.randn(16, 1, 32, generator=g), torch.randint(0, 256, (16,), generator=g))
    qat.end_calibration(model)
    model.eval()


@pytest.fixture(scope="module")
def qat_pair(float_model):
    """(float twin, calibrated fake-quant model with every component converted)."""
    model = copy.deepcopy(float_model)
    qat.prepare_qat_(model, ["velocity", "seismic", "unet"])
    calibrate(model)
    return float_model, model
