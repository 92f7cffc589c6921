"""Learning-rate schedule factories, all stepped once per optimiser step.

Each factory returns `make(optimizer, steps_per_epoch, epochs) -> scheduler`, the signature the
Trainer expects, so recipes can name a schedule and its parameters only:

- `onecycle`  (Q2L / MA-Q2L): torch OneCycleLR, peak `max_lr`, warm-up fraction `pct_start`.
- `multistep` (ViT fine-tuning): x gamma at the given *epochs* (converted to steps).
- `cosine`    (DINO): linear warm-up from `warmup_lr` for `warmup_epochs`, cosine to `min_lr`.

`cosine_values` is the per-step array form DINO also uses for weight decay and teacher momentum,
and `ParamGroupSchedule` applies such arrays to any optimiser hyperparameter.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, MultiStepLR, OneCycleLR

SchedulerFactory = Callable[[Optimizer, int, int], object]


def onecycle(max_lr: float, pct_start: float = 0.2, div_factor: float = 25.0,
             final_div_factor: float = 1e4) -> SchedulerFactory:
    def make(optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> OneCycleLR | None:
        total = steps_per_epoch * epochs
        if total < 3:  # OneCycleLR divides by zero below 3 steps: keep the lr constant at max_lr
            return None
        # The warm-up phase must span at least one step or OneCycleLR divides by zero (short test runs).
        pct = min(max(pct_start, 1.5 / total), 0.5)
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct, div_factor=div_factor,
                          final_div_factor=final_div_factor)
    return make


def multistep(milestones: list[int], gamma: float = 0.1) -> SchedulerFactory:
    def make(optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> MultiStepLR:
        return MultiStepLR(optimizer, milestones=[m * steps_per_epoch for m in milestones], gamma=gamma)
    return make


def cosine_values(base: float, final: float, total_steps: int, warmup_steps: int = 0,
                  warmup_start: float = 0.0) -> np.ndarray:
    """Per-step values: linear warm-up warmup_start -> base, then half-cosine base -> final (DINO's scheduler)."""
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(warmup_start, base, warmup_steps, endpoint=False) if warmup_steps else np.empty(0)
    rest = total_steps - warmup_steps
    i = np.arange(rest)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * i / max(rest, 1)))
    return np.concatenate([warm, cos])


def cosine(warmup_epochs: float = 0.0, warmup_lr: float = 0.0, min_lr: float = 0.0) -> SchedulerFactory:
    """Cosine with linear warm-up, relative to each param group's initial lr (LambdaLR)."""
    def make(optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> LambdaLR:
        total = max(1, steps_per_epoch * epochs)
        warm = int(round(warmup_epochs * steps_per_epoch))
        # LambdaLR scales each group's initial_lr, so the factor is relative to that, not to the current lr:
        # a budget re-plan rebuilds the schedule mid-run, when the lr may have decayed (to 0 with min_lr 0).
        group = optimizer.param_groups[0]
        base = group.get("initial_lr", group["lr"])

        def factor(step: int) -> float:
            if step < warm:
                return (warmup_lr + (base - warmup_lr) * step / warm) / base
            t = min(step - warm, total - warm) / max(total - warm, 1)
            return (min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t))) / base
        return LambdaLR(optimizer, factor)
    return make


def constant() -> SchedulerFactory:
    def make(optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> None:
        return None
    return make


class ParamGroupSchedule:
    """Set optimiser hyperparameters from per-step arrays, e.g. {"lr": [...], "weight_decay": [...]}.

    `groups` limits a key to some param groups (DINO decays only group 0; the no-decay group keeps 0).
    Stepped once per optimiser step like an LR scheduler; checkpointable.
    """

    def __init__(self, optimizer: Optimizer, values: dict[str, np.ndarray],
                 groups: dict[str, list[int]] | None = None):
        self.optimizer, self.values, self.groups = optimizer, values, groups or {}
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        for key, arr in self.values.items():
            v = float(arr[min(self.step_count, len(arr) - 1)])
            for gi, group in enumerate(self.optimizer.param_groups):
                if key in self.groups and gi not in self.groups[key]:
                    continue
                group[key] = v

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


def build_scheduler_factory(name: str, **kw) -> SchedulerFactory:
    """Recipe name -> factory: 'onecycle' | 'multistep' | 'cosine' | 'constant'."""
    table = {"onecycle": onecycle, "multistep": multistep, "cosine": cosine, "constant": constant}
    if name not in table:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(table)}")
    return table[name](**kw)


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


__all__ = ["onecycle", "multistep", "cosine", "constant", "cosine_values", "ParamGroupSchedule",
           "build_scheduler_factory", "current_lr"]
