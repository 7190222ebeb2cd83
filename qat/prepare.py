"""Turning UB-Diff components into their fake-quant form, and the calibration switches.

Components: ``velocity`` (velocity projector + decoder), ``seismic`` (seismic projector + decoder),
``unet``. Every Conv/Linear/attention MatMul of a component is quantized except, by
:class:`QATConfig`, the U-Net's time-embedding path (float by default: a few hundred MACs per step,
and the timestep signal is what quantization noise hurts first) and optionally the first and last
layer of each component. The encoder is never quantized: it is only used for training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from ubdiff_onnx.qat.attention import is_attention, quantize_attention_
from ubdiff_onnx.qat.fake_quant import DEFAULT_WEIGHT_RANGE, WEIGHT_RANGES, ActFakeQuant, WeightFakeQuant
from ubdiff_onnx.qat.fold import fold_bn_, foldable_pairs
from ubdiff_onnx.qat.modules import QUANT_CLASSES, _QuantLayer, quantize_layer_

COMPONENTS: dict[str, tuple[str, ...]] = {
    "velocity": ("velocity_projector", "velocity_decoder"),
    "seismic": ("seismic_projector", "seismic_decoder"),
    "unet": ("unet",),
}
FIRST_LAST: dict[str, tuple[str, ...]] = {
    "velocity": ("velocity_projector.fc", "velocity_decoder.head.conv"),
    "seismic": ("seismic_projector.fc", "seismic_decoder.out"),
    "unet": ("unet.init_conv", "unet.final_conv"),
}
NEVER_RUN = ("seismic_decoder.vit.head",)  # kept for lossless imports; never executed


@dataclass(frozen=True)
class QATConfig:
    quantize_matmuls: bool = True
    """Attention products (ViT q·k, a·v; U-Net linear and full attention)."""
    quantize_time_mlp: bool = False
    """U-Net time MLP and the per-block time projections."""
    float_first_last: bool = False
    """Keep each component's first and last layer float."""
    weight_range: str = DEFAULT_WEIGHT_RANGE
    """int8 weight range: "reduced" [-64, 64] runs exactly on every CPU; "full" [-128, 127] saturates
    on x86 without VNNI (``fake_quant.WEIGHT_RANGES``, docs/int8-cpus.md). Checkpoints written before
    this field existed are "full" (``state.restore_qat_``)."""

    def __post_init__(self) -> None:
        if self.weight_range not in WEIGHT_RANGES:
            raise ValueError(f"weight_range must be one of {', '.join(WEIGHT_RANGES)}, got {self.weight_range!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QATConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _skip(name: str, component: str, config: QATConfig) -> bool:
    if name in NEVER_RUN:
        return True
    if component == "unet" and not config.quantize_time_mlp and (name.startswith("unet.time_mlp") or name.endswith(".time_proj")):
        return True
    return config.float_first_last and name in FIRST_LAST[component]


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def qat_info(model: nn.Module) -> dict[str, Any] | None:
    """What has been converted: config, components, folded (layer, norm) pairs; None for a float model."""
    return getattr(model, "_qat_info", None)


def prepare_qat_(model: nn.Module, components: Iterable[str], config: QATConfig | None = None,
                 folded: Iterable[tuple[str, str]] | None = None) -> nn.Module:
    """Fold BatchNorms and insert fake-quant into ``components`` of ``model``, in place.

    ``folded`` is for restoring a QAT checkpoint, whose weights are already folded: the listed norms
    are only replaced by Identity. Components converted before are left alone (idempotent).
    """
    info = qat_info(model)
    if info is None:
        info = {"config": config or QATConfig(), "components": [], "folded": []}
    elif config is not None and config != info["config"]:
        raise ValueError(f"model already prepared with {info['config']}, not {config}")
    cfg: QATConfig = info["config"]
    already_folded = None if folded is None else {tuple(p) for p in folded}
    for comp in components:
        if comp not in COMPONENTS:
            raise ValueError(f"unknown QAT component {comp!r}; expected {', '.join(COMPONENTS)}")
        if comp in info["components"]:
            continue
        for prefix in COMPONENTS[comp]:
            root = model.get_submodule(prefix)
            for layer_path, norm_path in foldable_pairs(root, prefix):
                if already_folded is None:
                    fold_bn_(model.get_submodule(layer_path), model.get_submodule(norm_path))
                elif (layer_path, norm_path) not in already_folded:
                    continue
                _replace(model, norm_path, nn.Identity())
                info["folded"].append((layer_path, norm_path))
            for name, mod in list(root.named_modules(prefix=prefix)):
                if cfg.quantize_matmuls and is_attention(mod):
                    quantize_attention_(mod)
                elif type(mod) in QUANT_CLASSES and not _skip(name, comp, cfg):
                    quantize_layer_(mod, cfg.weight_range)
        info["components"].append(comp)
    model._qat_info = info  # plain attribute: Python state, not part of the state_dict
    return model


def quantizers(module: nn.Module) -> Iterator[tuple[str, ActFakeQuant | WeightFakeQuant]]:
    for name, mod in module.named_modules():
        if isinstance(mod, (ActFakeQuant, WeightFakeQuant)):
            yield name, mod


def quant_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, mod in module.named_modules():
        if isinstance(mod, _QuantLayer):
            yield name, mod


def quant_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The learnable scales (LSQ) under ``module``."""
    return [q.scale for _, q in quantizers(module)]


def begin_calibration(module: nn.Module) -> None:
    """Activation observers on (float pass-through), weight scales from max|w|."""
    for _, layer in quant_layers(module):
        layer.weight_quant.init_from(layer.weight)  # type: ignore[attr-defined]
    for _, q in quantizers(module):
        if isinstance(q, ActFakeQuant):
            q.start_observing()


def end_calibration(module: nn.Module, reduce: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
    """Freeze the observed ranges into scales; ``reduce(min_val, max_val)`` may merge them across
    processes first (all-reduce MIN / MAX) so every DDP rank gets the same scales."""
    for _, q in quantizers(module):
        if isinstance(q, ActFakeQuant) and q.observing:
            if reduce is not None:
                reduce(q.min_val, q.max_val)
            q.finish_observing()


def is_calibrated(module: nn.Module) -> bool:
    qs = [q for _, q in quantizers(module)]
    return bool(qs) and all(q.calibrated for q in qs)


def set_quant_enabled(module: nn.Module, enabled: bool) -> None:
    """Switch fake-quant off (float twin of the folded model) or back on."""
    for _, q in quantizers(module):
        q.enabled = enabled


def constrain_(module: nn.Module) -> None:
    """Keep learned scales positive; call after each optimizer step."""
    for _, q in quantizers(module):
        q.constrain_()
