"""RS (representation-steering) adapters: a small bottleneck MLP beside each transformer block's MLP.

SFR-Net adds one adapter to every block of both CLIP encoders. It reads the same LayerNorm output
as the block's MLP and its result is added to the MLP's, so a block computes
`x = x + attn(ln_1(x)); n = ln_2(x); x = x + mlp(n) + adapter(n)`. The up-projection starts at zero,
so at initialisation every block, and therefore the whole encoder, is exactly the frozen CLIP.

The adapter is injected by replacing `block.mlp` with `MlpWithAdapter`, which keeps the MLP's own
layers under their original names (`mlp.c_fc`, `mlp.c_proj`): open_clip and OpenAI checkpoints load
into an adapted model unchanged, and every adapter parameter has "adapter" in its name.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

ADAPTER_KEY = "adapter"  # substring of every adapter parameter name (the freezing rule uses it)


class RSAdapter(nn.Module):
    """Linear(d -> bottleneck) -> GELU -> Dropout -> Linear(bottleneck -> d), the last one zero-initialised."""

    def __init__(self, dim: int, bottleneck: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        # Zero up-projection: the adapter outputs exactly 0 until it has been trained.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.enabled = True  # switched off to reproduce plain CLIP (e.g. for the class graph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.act(self.down(x))))


class MlpWithAdapter(nn.Module):
    """A block's MLP (an nn.Sequential such as c_fc -> gelu -> c_proj) plus an RS adapter in parallel."""

    def __init__(self, mlp: nn.Module, adapter: RSAdapter) -> None:
        super().__init__()
        self._mlp_layers: list[str] = []
        for name, layer in mlp.named_children():
            self.add_module(name, layer)
            self._mlp_layers.append(name)
        if not self._mlp_layers:
            raise TypeError(f"cannot adapt {type(mlp).__name__}: expected a sequential MLP with child layers")
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for name in self._mlp_layers:
            h = getattr(self, name)(h)
        if self.adapter.enabled:
            h = h + self.adapter(x)
        return h


def inject_adapters(blocks: Iterable[nn.Module], dim: int, bottleneck: int = 128,
                    dropout: float = 0.1) -> list[RSAdapter]:
    """Give every block (anything with an `.mlp` and an `.ln_2`) its own adapter; returns the adapters."""
    adapters = []
    for i, block in enumerate(blocks):
        if not hasattr(block, "mlp") or not hasattr(block, "ln_2"):
            raise TypeError(f"block {i} ({type(block).__name__}) has no mlp/ln_2 to attach an adapter to")
        if isinstance(block.mlp, MlpWithAdapter):
            raise ValueError(f"block {i} already has an adapter")
        adapter = RSAdapter(dim, bottleneck, dropout)
        block.mlp = MlpWithAdapter(block.mlp, adapter)
        adapters.append(adapter)
    return adapters


def adapters_of(module: nn.Module) -> list[RSAdapter]:
    return [m for m in module.modules() if isinstance(m, RSAdapter)]


@contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Run `module` as plain CLIP: every adapter inside it is bypassed until the block exits."""
    adapters = adapters_of(module)
    previous = [a.enabled for a in adapters]
    for a in adapters:
        a.enabled = False
    try:
        yield
    finally:
        for a, state in zip(adapters, previous):
            a.enabled = state
