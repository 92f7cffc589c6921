"""Model registry: `@register_model` on a factory, `create_model(name)` to build it.

Each factory takes `**kwargs` (num_classes, pretrained, overrides) and returns a torch module
whose `.cfg` attribute is its `ModelCfg`. Names are the ones users type: `vit-t-dino`,
`ma-q2l-r101`, `scnet`...
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from edgesewer.errors import ModelNotFound
from edgesewer.modelcfg import ModelCfg


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable
    cfg: ModelCfg
    status: str = "ready"  # shown by `edgesewer models`


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(cfg: ModelCfg, status: str = "ready") -> Callable:
    """Decorator: register `factory(**kwargs) -> nn.Module` under `cfg.name`."""

    def deco(factory: Callable) -> Callable:
        if cfg.name in _REGISTRY:
            raise ValueError(f"model {cfg.name!r} registered twice")
        _REGISTRY[cfg.name] = ModelEntry(cfg.name, factory, cfg, status)
        return factory

    return deco


def _ensure_families_loaded() -> None:
    # Importing the package imports every family module, which registers its models.
    import edgesewer.models  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _ensure_families_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFound(f"unknown model {name!r}{hint} (see `edgesewer models`)")
    return _REGISTRY[name]


def create_model(name: str, **kwargs):
    """Build a registered model; kwargs go to its factory (e.g. num_classes, pretrained)."""
    return get_entry(name).factory(**kwargs)


def list_models() -> list[str]:
    _ensure_families_loaded()
    return sorted(_REGISTRY)
