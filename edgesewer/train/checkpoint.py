"""Checkpoint files: atomic save, validated load, and the RNG state that makes resume exact.

A checkpoint is a dict with {"model", "model_cfg", "epoch", "metrics", "weights", "recipe",
"model_kwargs"}: best.pt stops there (what evaluation and export need); last.pt adds "optimizer",
"scheduler", "scaler", "ema", "rng" (one state per rank) and "trainer" (step, best value,
early-stop counter) for an exact resume. `model_cfg` is `ModelCfg.to_dict()`, so export and the
runtime know the classes, input size, normalisation and thresholds without the recipe;
`model_kwargs` rebuild the architecture with `create_model(name, **model_kwargs)`.

Checkpoints come from other people's machines, and unpickling can run any code, so every file a
user names is read by `read_torch_file` with `weights_only=True` (tensors, containers and plain
scalars only). Our own checkpoints are saved in that vocabulary (numpy values become python
scalars or tensors). A file that needs more is refused unless the user says they trust it
(`--trust-checkpoint`, which runs the command inside `trusting_checkpoints()`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from edgesewer.errors import DataError, ModelNotFound
from edgesewer.modelcfg import ModelCfg


_TRUST_CHECKPOINTS = contextvars.ContextVar("edgesewer_trust_checkpoints", default=False)

TRUST_HINT = "pass --trust-checkpoint only if you trust where the file came from"


@contextlib.contextmanager
def trusting_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within this block `read_torch_file` may unpickle arbitrary objects (the user's explicit choice)."""
    token = _TRUST_CHECKPOINTS.set(trust)
    try:
        yield
    finally:
        _TRUST_CHECKPOINTS.reset(token)


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """The one way the package reads a `.pt` file a user names: weights only, never a silent unsafe retry.

    Raises DataError naming the file when it is missing or unreadable, and when it holds objects
    beyond tensors and plain containers (unpickling those can execute code), unless the caller is
    inside `trusting_checkpoints()`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    if _TRUST_CHECKPOINTS.get():
        loaders = (True, False)  # still prefer the safe reader; fall back only because the user said so
    else:
        loaders = (True,)
    for weights_only in loaders:
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as exc:
            unsafe = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if unsafe is None:
                raise DataError(f"{path}: not a readable PyTorch {what} (UnpicklingError)") from None
            if weights_only and len(loaders) > 1:
                continue
            raise DataError(f"{path}: refused: the {what} holds a pickled {unsafe.group(1)}, and unpickling it "
                            f"could run code; {TRUST_HINT}") from None
        except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
            raise DataError(f"{path}: not a readable PyTorch {what} ({type(exc).__name__})") from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` via a temporary file, so a crash never leaves half a checkpoint.

    numpy values are stored as python scalars and tensors, so the file loads with weights_only=True.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(_without_numpy(state), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _without_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _without_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):  # leave namedtuples alone
        return type(value)(_without_numpy(v) for v in value)
    return value


def load_checkpoint(path: str | Path, expect_model: str | None = None) -> dict[str, Any]:
    """Read a checkpoint; raise DataError if it is missing/unreadable/unsafe, ModelNotFound if it is another model's."""
    path = Path(path)
    ckpt = read_torch_file(path)
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
        "numpy": _numpy_rng_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_rng_state() -> tuple:
    # The MT19937 key as an int64 tensor: torch.load(weights_only=True) reads it, and every torch >= 2.1 has int64.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]  # saved with the key array as a tensor (see save_checkpoint)
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
