"""Run folders: `runs/<model>/<timestamp>/` holding best.pt, last.pt, results.jsonl and recipe.yaml."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from edgesewer.train.distributed import broadcast_object
from edgesewer.train.engine import TrainConfig
from edgesewer.train.recipe import TrainSection


def resolve_run_dir(model: str, out: str | Path | None = None, resume: str | Path | None = None,
                    root: str | Path = "runs", prefix: str = "") -> Path:
    """The folder of this run: `out` when given, the resumed checkpoint's folder, else a new timestamped one.

    Under torchrun every rank gets rank 0's answer (timestamps could differ by a second).
    """
    if out is not None:
        path = Path(out)
    elif resume is not None:
        path = Path(resume).parent
    else:
        path = Path(root) / model / (prefix + time.strftime("%Y%m%d-%H%M%S"))
        # Two runs started in the same second must not share a folder.
        base, n = path, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    return Path(broadcast_object(str(path)))


def train_config(section: TrainSection, out_dir: Path, num_workers: int, **overrides: Any) -> TrainConfig:
    """TrainConfig from a recipe's train section (shared field names) plus run-specific values."""
    names = {f.name for f in fields(TrainConfig)}
    values = {f.name: getattr(section, f.name) for f in fields(TrainSection) if f.name in names}
    values.update(out_dir=out_dir, num_workers=num_workers, **overrides)
    return TrainConfig(**values)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
