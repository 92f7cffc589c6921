"""Exponential moving average of a model's weights (timm's ModelEmaV3 does the arithmetic).

Every floating-point entry of the state dict (parameters *and* buffers, as MA-Q2L's ModelEma does)
follows `ema = decay * ema + (1 - decay) * model` after each optimiser step; integer buffers
(e.g. BatchNorm's num_batches_tracked) are copied.
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn


class ModelEma:
    """EMA copy of `model` with a fixed decay, checkpointable with `state_dict()`."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        # stochastic_rounding only matters for bf16 weights; keep it off so updates are exact.
        self._ema = ModelEmaV3(model, decay=decay, stochastic_rounding=False)
        self.decay = decay
        self.num_updates = 0

    @property
    def module(self) -> nn.Module:
        """The averaged model (always in eval mode)."""
        return self._ema.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._ema.update(model)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state.get("num_updates", 0))
