"""TorchScript bundles: the same three components, traced and frozen (FP32), or with torch's own
dynamic INT8 Linear kernels (``torchscript-int8``: every nn.Linear, including the seismic decoder's
224 M-weight one, runs through fbgemm/qnnpack; convolutions stay FP32).

TorchScript is deprecated upstream (``torch.jit`` warns on trace), ``optimize_for_mobile`` fails on
the PyPI wheels, and a Pi would need the 407 MB torch wheel: ONNX is the primary path. This format
exists so the refactor's users can compare (`bench`, `sample --runtime torchscript`).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from ubdiff_onnx.conversion.components import component_modules, example_inputs
from ubdiff_onnx.runtime.manifest import COMPONENTS, io_spec


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_torchscript_components(model, stage_dir: Path, int8: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    latent_dim = model.cfg.latent_dim
    entries = {}
    for name, module in component_modules(model).items():
        if int8:
            with _quiet():
                module = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
        with _quiet(), torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(module, example_inputs(name, latent_dim, batch=2), check_trace=False))
        rel = f"{name}/model.pt"
        (stage_dir / name).mkdir(parents=True, exist_ok=True)
        traced.save(str(stage_dir / rel))
        entries[name] = {"path": rel, "format": "torchscript", "torch": torch.__version__, **io_spec(latent_dim)[name]}
        if progress:
            progress(name)
    assert set(entries) == set(COMPONENTS)
    return entries
