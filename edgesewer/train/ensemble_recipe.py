"""An ensemble recipe (train/videopipe-ensemble.yaml): which models a blend holds and their weights.

    members:                    # model: weight (null: shares the rest, equally or fitted with --fit-gt)
      superimage-nfnet-f3: null
      video-swin3d-b: 0.1

`edgesewer video ensemble --recipe train/videopipe-ensemble.yaml runs/*/oof_results.json` matches
each results file to its member by model name and applies these weights. Which model a results
file scores comes from, in this order:

* the fold run folders `edgesewer video folds-train` writes next to its oof_results.json
  (`fold<k>/recipe.yaml`: model.name; `fold<k>/video.json`: frame_model, for the frame-based route);
* the file's folder or name, when it is a member's name (`runs/video-swin3d-b/oof_results.json`,
  `video-swin3d-b.json`): for result files copied out of their run folders.

Numpy and YAML only (no torch), like the rest of the ensemble code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from edgesewer.errors import DataError
from edgesewer.train.recipe import read_yaml, recipes_dir


@dataclass(frozen=True)
class EnsembleRecipe:
    members: dict[str, float | None]  # model -> fixed weight, or None: shares what the fixed ones leave
    source: str
    normal_threshold: float | None = None  # the post-processing rule the blend is scored with
    targets: dict[str, Any] = field(default_factory=dict)  # informational: the paper's numbers

    @property
    def fixed(self) -> dict[str, float]:
        return {m: w for m, w in self.members.items() if w is not None}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_ensemble_recipe(path: str | Path) -> EnsembleRecipe:
    """Read and check an ensemble recipe; a bare name (`videopipe-ensemble`) is looked up in the shipped recipes."""
    path = Path(path)
    shipped = recipes_dir() / f"{path.stem}.yaml"
    if not path.is_file() and path.parent == Path(".") and shipped.is_file():
        path = shipped
    raw = read_yaml(path)
    members = raw.get("members") if isinstance(raw, dict) else None
    if not isinstance(members, dict) or not members:
        raise DataError(f"{path}: an ensemble recipe needs `members:`, a mapping of model name to weight (or null)")
    for name, weight in members.items():
        if weight is not None and not (_number(weight) and 0 <= weight <= 1):
            raise DataError(f"{path}: member {name}: weight {weight!r} is not a number in [0, 1] or null")
    fixed = sum(float(w) for w in members.values() if w is not None)
    shared = [m for m, w in members.items() if w is None]
    if fixed > 1 + 1e-9 or (not shared and abs(fixed - 1) > 1e-9):
        raise DataError(f"{path}: the fixed member weights sum to {fixed:g}; they must sum to at most 1 "
                        "(exactly 1 when no member is null)")
    threshold = raw.get("normal_threshold")
    if threshold is not None and not _number(threshold):
        raise DataError(f"{path}: normal_threshold {threshold!r} is not a number")
    return EnsembleRecipe({str(m): None if w is None else float(w) for m, w in members.items()}, str(path),
                          threshold, dict(raw.get("targets") or {}))


def _fold_models(folder: Path) -> set[str]:
    """Model names of the fold run folders `folds-train` wrote into `folder` (empty when there are none)."""
    names = set()
    for recipe in sorted(folder.glob("fold*/recipe.yaml")):
        try:
            data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
            video_json = recipe.with_name("video.json")
            video = json.loads(video_json.read_text(encoding="utf-8")) if video_json.is_file() else {}
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise DataError(f"{recipe}: unreadable ({exc})") from None
        # The frame-based route names its runs after the frame model, as train_video does.
        name = (video or {}).get("frame_model") or (data.get("model") or {}).get("name")
        if name:
            names.add(str(name))
    return names


def results_model(path: Path, members: Sequence[str]) -> str | None:
    """The model a results file scores (see the module docstring); None when nothing says."""
    folds = _fold_models(path.parent)
    if len(folds) > 1:
        raise DataError(f"{path}: the fold runs next to it are of different models ({', '.join(sorted(folds))})")
    if folds:
        return folds.pop()
    for name in (path.parent.name, path.stem):
        if name in members:
            return name
    return None


def match_members(recipe: EnsembleRecipe, paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(member, results file) in the recipe's member order; one file per member, every member covered."""
    members = list(recipe.members)
    found: dict[str, Path] = {}
    for path in paths:
        model = results_model(Path(path), members)
        if model is None:
            raise DataError(f"{path}: cannot tell which model it scores (no fold<k>/recipe.yaml next to it, and "
                            f"neither its folder nor its name is a member of {recipe.source}: {', '.join(members)})")
        if model not in recipe.members:
            raise DataError(f"{path}: scores {model}, which is not a member of {recipe.source} "
                            f"({', '.join(members)})")
        if model in found:
            raise DataError(f"{path}: a second results file for {model} (the first is {found[model]})")
        found[model] = Path(path)
    missing = [m for m in members if m not in found]
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise DataError(f"{recipe.source}: no results file for member {missing[0]}{more} among the "
                        f"{len(paths)} given")
    return [(m, found[m]) for m in members]
