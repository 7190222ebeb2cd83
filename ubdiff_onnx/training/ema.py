"""Exponential moving average of the U-Net weights (what the original samples with).

Decay warms up as 1 - (1 + n)^(-2/3) (n = updates so far), capped at ``beta``, as ema_pytorch does:
a short run is not stuck near its random initialisation, a long run averages over ~1/(1-beta) updates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, beta: float, every: int = 1) -> None:
        self.beta = beta
        self.every = max(1, every)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def decay(self) -> float:
        return min(self.beta, 1.0 - (1.0 + self.updates) ** (-2.0 / 3.0))

    @torch.no_grad()
    def step(self, module: nn.Module, global_step: int) -> None:
        """Call after every optimizer step; averages every ``every`` steps."""
        if global_step % self.every:
            return
        d = self.decay()
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach(), 1.0 - d)
            else:
                s.copy_(v)
        self.updates += 1

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow, strict=True)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "updates": self.updates, "beta": self.beta, "every": self.every}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)  # keeps this process's device
        self.updates = int(state["updates"])
