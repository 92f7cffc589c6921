"""Checkpoint files: atomic save, validated load, and the RNG state that makes resume exact.

A checkpoint is a dict with {"model", "model_cfg", "epoch", "metrics", "weights", "recipe",
"model_kwargs"}: best.pt stops there (what evaluation and export need); last.pt adds "optimizer",
"scheduler", "scaler", "ema", "rng" (one state per rank) and "trainer" (step, best value,
early-stop counter) for an exact resume. `model_cfg` is `ModelCfg.to_dict()`, so export and the
runtime know the classes, input size, normalisation and thresholds without the recipe;
`model_kwargs` rebuild the architecture with `create_model(name, **model_kwargs)`.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgesewer.errors import DataError, ModelNotFound
from edgesewer.modelcfg import ModelCfg


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` via a temporary file, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, expect_model: str | None = None) -> dict[str, Any]:
    """Read a checkpoint; raise DataError if it is missing/unreadable, ModelNotFound if it is another model's."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        # weights_only=False: our checkpoints hold numpy RNG state and plain dicts; only load files you trust.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_cfg" not in ckpt:
        raise DataError(f"{path}: not an edgesewer checkpoint (no 'model' and 'model_cfg' entries)")
    name = ckpt["model_cfg"].get("name")
    if expect_model is not None and name != expect_model:
        raise ModelNotFound(f"{path}: checkpoint is for model {name}, not {expect_model}")
    return ckpt


def checkpoint_model_cfg(ckpt: dict[str, Any]) -> ModelCfg:
    return ModelCfg.from_dict(ckpt["model_cfg"])


def capture_rng() -> dict[str, Any]:
    """The state of every random generator training draws from (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
