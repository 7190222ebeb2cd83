"""Metrics: one JSON object per line in RUN_DIR/metrics.jsonl, and the SSIM the original reports.

JSONL because it can be appended to safely by a resumed run and read line by line while a run is
going (``tail -f``, pandas ``read_json(lines=True)``). Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Append-only JSONL writer; ``enabled=False`` (non-zero ranks) makes it a no-op."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, **record: Any) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **{k: _plain(v) for k, v in record.items()}}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line from a killed run is skipped)."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images in [0, 1] (B,C,H,W), Gaussian window 11/σ 1.5 as pytorch_ssim."""
    c = a.shape[1]
    w = _gaussian_window(window, sigma, c, a.device)
    pad = window // 2
    mu_a = F.conv2d(a, w, padding=pad, groups=c)
    mu_b = F.conv2d(b, w, padding=pad, groups=c)
    var_a = F.conv2d(a * a, w, padding=pad, groups=c) - mu_a**2
    var_b = F.conv2d(b * b, w, padding=pad, groups=c) - mu_b**2
    cov = F.conv2d(a * b, w, padding=pad, groups=c) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()
