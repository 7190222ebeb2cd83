"""QAT state in a checkpoint, and rebuilding the fake-quant model from it.

A QAT checkpoint stores

- ``state_dict``: the float model's keys, with the folded weights and each folded BatchNorm set to
  the identity — so ``build_model`` gives the folded float twin;
- ``qat``: :func:`qat_state` — scheme, config, converted components, folded (layer, norm) pairs and
  every quantizer's qparams by module path::

    {"<layer>.input_quant":  {"kind": "activation", "dtype": "uint8", "scale": 0.012, "zero_point": 131},
     "<layer>.weight_quant": {"kind": "weight", "dtype": "int8", "axis": 0, "scale": tensor(C),
                              "zero_point": 0, "qmin": -128, "qmax": 127}, ...}

:func:`model_from_checkpoint` is what ``export --format qdq`` calls: the eval-mode fake-quant model
whose forward exports to QuantizeLinear/DequantizeLinear. Biases stay float in the model; a QDQ
exporter quantizes them to int32 with scale = input scale × weight scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.qat.fake_quant import ACT_QMAX, ACT_QMIN, WEIGHT_RANGES, ActFakeQuant, WeightFakeQuant
from ubdiff_onnx.qat.fold import identity_bn_entries
from ubdiff_onnx.qat.prepare import QATConfig, prepare_qat_, qat_info, quantizers

QAT_STATE_VERSION = 1


def qat_state(model: nn.Module) -> dict[str, Any] | None:
    """The checkpoint's ``qat`` field for ``model`` (None if nothing was converted)."""
    info = qat_info(model)
    if not info:
        return None
    entries: dict[str, dict[str, Any]] = {}
    for name, q in quantizers(model):
        if isinstance(q, ActFakeQuant):
            if not q.calibrated:
                continue
            q.refresh()
            scale, zp = q._const
            entries[name] = {"kind": "activation", "dtype": "uint8", "scale": scale, "zero_point": zp,
                             "qmin": ACT_QMIN, "qmax": ACT_QMAX}
        elif q.calibrated:
            entries[name] = {"kind": "weight", "dtype": "int8", "axis": q.axis, "scale": q.scale.detach().cpu().clone(),
                             "zero_point": 0, "qmin": q.qmin, "qmax": q.qmax}
    return {
        "version": QAT_STATE_VERSION,
        "scheme": "activations uint8 per-tensor affine; weights int8 symmetric per-channel",
        "config": info["config"].to_dict(),
        "components": list(info["components"]),
        "folded": [list(p) for p in info["folded"]],
        "quantizers": entries,
    }


def _out_channels(layer: nn.Module) -> int:
    return layer.weight.shape[1] if isinstance(layer, nn.ConvTranspose2d) else layer.weight.shape[0]


def float_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` in the float model's key layout (quantizers removed, folded norms
    stored as identity BatchNorms), on CPU."""
    quant_prefixes = tuple(f"{name}." for name, _ in quantizers(model))
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith(quant_prefixes)}
    info = qat_info(model)
    for layer_path, norm_path in (info or {}).get("folded", []):
        sd.update(identity_bn_entries(norm_path, _out_channels(model.get_submodule(layer_path))))
    return sd


def restore_qat_(model: nn.Module, state: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Re-create the fake-quant modules of a QAT checkpoint on a float model loaded from it."""
    if not isinstance(state, dict) or state.get("version") != QAT_STATE_VERSION:
        raise UserError(f"{source}: unsupported QAT state (version {state.get('version') if isinstance(state, dict) else None!r})")
    config = dict(state["config"])
    config.setdefault("weight_range", "full")  # written before the field existed: full-range weights
    prepare_qat_(model, state["components"], QATConfig.from_dict(config), folded=[tuple(p) for p in state["folded"]])
    present = dict(quantizers(model))
    stored = state["quantizers"]
    missing = sorted(set(present) - set(stored))
    unknown = sorted(set(stored) - set(present))
    if missing or unknown:
        detail = f"{len(missing)} missing (e.g. {missing[0]})" if missing else f"{len(unknown)} unknown (e.g. {unknown[0]})"
        raise UserError(f"{source}: QAT scales do not match the model: {detail}")
    with torch.no_grad():
        for name, entry in stored.items():
            q = present[name]
            if isinstance(q, ActFakeQuant):
                q.scale.fill_(float(entry["scale"]))
                q.zero_point.fill_(int(entry["zero_point"]))
                q.observing = False
                q.calibrated = True
                q.refresh()
            else:
                assert isinstance(q, WeightFakeQuant)
                scale = torch.as_tensor(entry["scale"], dtype=q.scale.dtype)
                if scale.shape != q.scale.shape:
                    raise UserError(f"{source}: QAT scale {name} has shape {tuple(scale.shape)}, expected {tuple(q.scale.shape)}")
                q.scale.copy_(scale)
                q.set_range(weight_range_of(entry, name, source))
                q.calibrated = True
    return model


def weight_range_of(entry: dict[str, Any], name: str = "weight", source: str = "checkpoint") -> str:
    """The ``WEIGHT_RANGES`` name of a stored weight quantizer's (qmin, qmax); absent = "full"."""
    bounds = (int(entry.get("qmin", -128)), int(entry.get("qmax", 127)))
    for range_name, r in WEIGHT_RANGES.items():
        if bounds == r:
            return range_name
    raise UserError(f"{source}: QAT weight quantizer {name} has range {list(bounds)}; supported: "
                    + ", ".join(f"{k} {list(v)}" for k, v in WEIGHT_RANGES.items()))


def checkpoint_weight_range(state: dict[str, Any], source: str = "checkpoint") -> str:
    """The single weight range of a QAT checkpoint's quantizers ("reduced" or "full")."""
    found = {weight_range_of(e, n, source) for n, e in state["quantizers"].items() if e.get("kind") == "weight"}
    if len(found) > 1:
        raise UserError(f"{source}: QAT weight quantizers mix the ranges {', '.join(sorted(found))}")
    return found.pop() if found else str(state.get("config", {}).get("weight_range", "full"))


def model_from_checkpoint(ckpt, *, use_ema: bool = False, source: str = "checkpoint") -> nn.Module:
    """Eval-mode UBDiff of a checkpoint: the fake-quant model when it carries QAT state, else float."""
    from ubdiff_onnx.checkpoints.format import build_model

    model = build_model(ckpt, use_ema=use_ema, source=source)
    if ckpt.qat:
        restore_qat_(model, ckpt.qat, source)
    return model.eval()
