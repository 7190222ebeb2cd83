"""Our own checkpoint format: a versioned dict carrying the config, weights in our naming,
optional EMA weights of the U-Net, optional QAT state, and free-form metadata.

``{"format": "ubdiff-onnx", "version": 1, "config": {...}, "state_dict": {...},
   "ema": {...} | None, "qat": {...} | None, "meta": {...}}``

Schedule buffers are not stored: they are derived from the config (timesteps, objective).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ubdiff_onnx.checkpoints.io import atomic_torch_save, load_torch_file
from ubdiff_onnx.config import UBDiffConfig
from ubdiff_onnx.errors import UserError

FORMAT_NAME = "ubdiff-onnx"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    config: UBDiffConfig
    state_dict: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    """EMA weights of the U-Net only (keys relative to ``unet.``)."""
    qat: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "state_dict": self.state_dict,
            "ema": self.ema,
            "qat": self.qat,
            "meta": self.meta,
        }


def save_checkpoint(ckpt: Checkpoint, path: Path) -> None:
    atomic_torch_save(ckpt.to_dict(), Path(path))


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and validate one of our checkpoints; every problem is one clear line."""
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        hint = ""
        if isinstance(obj, dict):
            keys = sorted(map(str, obj))[:6]
            hint = f" (top-level keys {keys})"
            if "model" in obj:
                hint += "; it looks like an original/refactor UB-Diff file: import it with `ubdiff-onnx convert-checkpoint SRC DST --layout original|refactor`"
        raise UserError(f"{path}: not an ubdiff-onnx checkpoint{hint}")
    version = obj.get("version")
    if not isinstance(version, int) or version < 1:
        raise UserError(f"{path}: invalid checkpoint version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format version {version} is newer than this ubdiff-onnx supports ({FORMAT_VERSION}); upgrade ubdiff-onnx")
    try:
        cfg = UBDiffConfig.from_dict(obj["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: invalid model config in checkpoint: {exc}") from None
    sd = obj.get("state_dict")
    if not isinstance(sd, dict) or not sd:
        raise UserError(f"{path}: checkpoint has no state_dict")
    return Checkpoint(cfg, sd, obj.get("ema"), obj.get("qat"), obj.get("meta") or {})


def check_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Strict key + shape check with a readable summary instead of torch's wall of text."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)}≠{tuple(v.shape)}" for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise UserError(f"{source}: weights do not match the model config: {'; '.join(parts)}")


def build_model(ckpt: Checkpoint, *, use_ema: bool = False, source: str = "checkpoint"):
    """An eval-mode :class:`UBDiff` with the checkpoint's weights (EMA U-Net if asked and present)."""
    from ubdiff_onnx.models.ubdiff import UBDiff

    model = UBDiff(ckpt.config)
    sd = dict(ckpt.state_dict)
    if use_ema:
        if not ckpt.ema:
            raise UserError(f"{source}: --use-ema given but the checkpoint has no EMA weights")
        sd.update({f"unet.{k}": v for k, v in ckpt.ema.items()})
    check_state_dict(model, sd, source)
    model.load_state_dict(sd, strict=True)
    return model.eval()
