"""Training recipes: YAML files with one section per concern, validated into dataclasses.

A recipe names the model, data, loop, optimiser, loss, augmentation and (for DINO or hybrid
pretraining) the self-distillation settings. Recipes ship in the top-level `train/`
folder, which the package installs as `edgesewer.recipes`; `<model>.yaml` is the supervised
(fine-tuning) recipe and `<model>.pretrain.yaml` the DINO pretraining one.

Any field can be overridden from the command line with a dotted path (spaCy's `--set` habit):
`--set train.epochs=3 --set optim.milestones=[2,4]`; values are parsed as YAML. Unknown sections
or keys are errors naming the file and the key, with a close match when there is one.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from edgesewer.errors import DataError


@dataclass
class ModelSection:
    name: str = ""
    pretrained: bool = False  # ImageNet weights from timm/torchvision (needs internet)
    img_size: int | None = None  # None: the model's own input size
    drop_path_rate: float = 0.0
    backbone_ckpt: str | None = None  # DINO backbone to fine-tune from (vit-*-dino)
    # Without pretrained weights, frozen BatchNorm is an identity and a deep ResNet's activations
    # explode (R101 layer4 std ~5e3): "data" sets its statistics from one training batch instead.
    frozen_bn_init: str = "data"  # data | none
    # Recompute activations in the backward pass (timm's `set_grad_checkpointing`): slower steps, far less
    # memory; what lets a 1344 px super-image train on a 24 GB GPU. A training setting, not architecture.
    grad_checkpointing: bool = False
    kwargs: dict = field(default_factory=dict)  # extra factory arguments


@dataclass
class DataSection:
    root: str | None = None  # Sewer-ML folder (SewerML_Train.csv, SewerML_Val.csv, images/); CLI --data wins
    image_dir: str | None = None
    train_split: str = "Train"
    val_split: str = "Val"
    fraction: float = 1.0  # random share of the training rows (data-fraction experiments: 0.1, 0.5, 1.0)
    every_kth: int = 1  # 16 gives the "every 16th image" subset of both splits (those without a subset CSV)
    # Subset files listing the rows to use (MA-Q2L's SewerML_Train_sub_0.0625.csv / SewerML_Val_sub_0.0625.csv),
    # as given or inside the data folder; absent files fall back to every subset_fallback_kth-th row (with a note).
    train_csv: str | None = None
    val_csv: str | None = None
    subset_fallback_kth: int = 16
    normalization: str = "model"  # model | sewerml | imagenet
    num_workers: int = 2
    on_bad_image: str = "skip"  # skip | error
    # crack segmentation (edgesewer.train.segment)
    layout: str | None = None  # deepcrack | crackforest | crack500 | plain; None: detect
    edge: str = "canny"  # edge detector of the 4th input channel
    repeats: int = 1  # random crops per image per epoch


@dataclass
class TrainSection:
    mode: str = "finetune"  # finetune | linear_probe (hybrid is a pretraining stage: dino.mode)
    epochs: int = 10
    batch_size: int = 32  # per process; the global batch is batch_size x processes x accum_steps
    accum_steps: int = 1
    amp: bool = True
    cpu_bf16: bool = False  # bf16 autocast on a CPU with native bf16 (see TrainConfig)
    ema_decay: float | None = None
    ema_select: bool = True
    monitor: str = "F2_CIW"
    monitor_mode: str = "max"
    early_stop: int | None = None
    seed: int = 0
    max_minutes: float | None = None
    budget_schedule: bool = False  # with max_minutes: fit epochs and the lr schedule to the budget
    min_epochs: int = 0  # with max_minutes: whole epochs the budget never cuts (a floor that holds on a loaded machine)
    clip_grad: float | None = None
    log_every: int = 10
    device: str = "auto"
    drop_last: bool = False
    progress: bool = True  # rich progress bars (rank 0)
    tune_thresholds: bool = True  # per-class F2-maximising thresholds on val, stored in best.pt


@dataclass
class OptimSection:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 5e-4
    backbone_lr: float | None = None  # task modules with a separate backbone/adapter group (sfr-net)
    scale_lr: bool = False  # lr x global batch / 256
    weight_decay: float = 0.05
    decay_1d: bool = False  # also decay biases and 1-D parameters (norms, tokens)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd only
    schedule: str = "multistep"  # multistep | onecycle | cosine | constant
    milestones: list[int] = field(default_factory=lambda: [15, 35])
    gamma: float = 0.1
    pct_start: float = 0.2
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    min_lr: float = 0.0


@dataclass
class LossSection:
    name: str = "ciw_bce"  # ciw_bce | bce | asl | scnet_focal_iou | scl
    gamma_neg: float = 2.0
    gamma_pos: float = 0.0
    clip: float = 0.0
    eps: float = 1e-5
    bottleneck_alpha: float = 2.0  # ASL focal weight multiplier of RB, IS, FO, OS
    dynamic_weights: bool = False  # MA-Q2L alpha_n = (mean AP - AP_n) / 10 on the top-m classes
    dynamic_top: int = 4
    # SCNet: focal(fused) + sum_i w_i focal(side_i) + iou_weight * SoftIoU(fused)
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    focal_reduction: str = "sum"  # sum over pixels (the paper's equations) | mean (see train/losses_seg.py)
    side_weights: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 0.75, 0.5])
    iou_weight: float = 1.0
    # SFR-Net's synergistic contrastive loss: softmax over B x C scores at `temperature` + rank_weight x margin loss
    temperature: float = 0.1
    margin: float = 0.2
    rank_weight: float = 10.0


@dataclass
class AugmentSection:
    name: str = "finetune"  # finetune | randaugment | none
    hflip: float = 0.5
    vflip: float = 0.5  # crack segmentation only
    # brightness, contrast, saturation, hue
    color_jitter: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.1, 0.1])
    equalize: float = 0.2  # probability of equalize-or-autocontrast
    rotation: float = 5.0  # max degrees
    right_angles: bool = False  # crack segmentation only: also turn by a random multiple of 90 degrees (lossless)
    jitter_cracks: bool = False  # crack segmentation only: apply color_jitter's brightness, contrast, saturation
    erasing: float = 0.25  # probability of one random erasing
    erasing_scale: list[float] = field(default_factory=lambda: [0.01, 0.05])
    erasing_ratio: list[float] = field(default_factory=lambda: [0.1, 1.0])
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9


@dataclass
class DinoSection:
    mode: str = "dino"  # dino (unlabelled images) | hybrid (DINO + supervised loss on labelled Sewer-ML)
    supervised_weight: float = 1.0  # hybrid: loss = DINO + supervised_weight x supervised (the `loss` section)
    out_dim: int = 32768
    norm_last_layer: bool = True
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996
    momentum_teacher_final: float = 0.999
    lr: float = 5e-5  # x global batch / 256
    warmup_epochs: int = 10
    warmup_lr: float = 3e-5
    min_lr: float = 1e-6
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    freeze_last_layer: int = 1
    clip_grad: float = 3.0  # per-parameter gradient-norm clip (0: off)
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    equalize: float = 0.3  # probability of equalisation of a view
    solarize: float = 0.3  # probability of solarisation, drawn independently of equalisation
    drop_path_rate: float = 0.1
    rankme_images: int = 2048  # validation images embedded for RankMe


@dataclass
class Recipe:
    stage: str = "train"  # train | pretrain
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    dino: DinoSection = field(default_factory=DinoSection)
    task: dict = field(default_factory=dict)  # free-form settings of other task modules (e.g. segmentation)
    source: str = ""  # where it was read from (informational)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# section name -> its dataclass (the default_factory of each Recipe field is the class itself)
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Recipe)  # type: ignore[misc]
                             if f.name not in ("stage", "source", "task")}


# ------------------------------------------------------------------------------------------ coercion

def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one YAML value against a field's type hint; DataError naming `where` otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise DataError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise DataError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise DataError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: expected a number, got {value!r}") from None
        if hint is int:
            if number != int(number):
                raise DataError(f"{where}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise DataError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def _build_section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {where.split(': ')[-1]}.{close[0]}?" if close else ""
            raise DataError(f"{where}.{key}: unknown setting{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def recipe_from_dict(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a parsed recipe; errors read `<source>: model.img_siz: unknown setting; did you mean ...`."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: a recipe must be a YAML mapping of sections")
    known = [*SECTIONS, "stage", "task"]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise DataError(f"{source}: unknown section {key!r}{hint} (sections: {', '.join(known)})")
    stage = str(raw.get("stage", "train"))
    if stage not in ("train", "pretrain"):
        raise DataError(f"{source}: stage must be 'train' or 'pretrain', got {stage!r}")
    sections = {name: _build_section(cls, raw.get(name), f"{source}: {name}") for name, cls in SECTIONS.items()}
    task = raw.get("task") or {}
    if not isinstance(task, dict):
        raise DataError(f"{source}: task: expected a mapping of settings, got {task!r}")
    return Recipe(stage=stage, source=source, task=dict(task), **sections)


# ------------------------------------------------------------------------------------------ overrides

def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings to a raw recipe dict (values parsed as YAML)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise DataError(f"--set {item}: expected section.key=value, e.g. train.epochs=3")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        # model.kwargs.NAME sets one factory argument (a mapping field) and keeps the others.
        entry = parts[2] if len(parts) == 3 and parts[:2] == ["model", "kwargs"] and parts[2] else None
        if entry is not None:
            parts = parts[:2]
        if len(parts) != 2 or (parts[0] not in SECTIONS and parts[0] != "task"):
            raise DataError(f"--set {item}: the key must be <section>.<setting> (or model.kwargs.<argument>) "
                            f"with a section among {', '.join(SECTIONS)}")
        section, key = parts
        names = [f.name for f in dataclasses.fields(SECTIONS[section])] if section != "task" else [key]
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {section}.{close[0]}?" if close else ""
            raise DataError(f"--set {item}: unknown setting {section}.{key}{hint}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        target = out.get(section)
        out[section] = dict(target) if isinstance(target, dict) else {}
        if entry is not None:
            current = out[section].get(key)
            value = {**(current if isinstance(current, dict) else {}), entry: value}
        out[section][key] = value
    return out


# ------------------------------------------------------------------------------------------ files

def recipes_dir() -> Path:
    """Where the shipped recipes are: the installed `edgesewer.recipes` package or the repo's train/."""
    try:
        # A namespace package (train/ has no __init__.py) yields a MultiplexedPath: take a real file's folder.
        for entry in importlib.resources.files("edgesewer.recipes").iterdir():
            if entry.name.endswith(".yaml") and isinstance(entry, Path):
                return entry.parent
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass
    return Path(__file__).resolve().parents[2] / "train"


def recipe_file_name(model: str, stage: str = "train") -> str:
    return f"{model}.pretrain.yaml" if stage == "pretrain" else f"{model}.yaml"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}{at}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return raw or {}


def load_recipe(model: str | None = None, path: str | Path | None = None, overrides: Iterable[str] = (),
                stage: str = "train") -> Recipe:
    """The recipe for `model` (shipped file) or at `path`, with overrides applied and validated.

    Raises DataError when no recipe exists, the file is malformed, or it is for another model.
    """
    if path is None:
        if not model:
            raise DataError("name a model or pass --recipe FILE")
        path = recipes_dir() / recipe_file_name(model, stage)
        if not path.is_file():
            shipped = sorted(p.name for p in recipes_dir().glob("*.yaml"))
            raise DataError(f"no {stage} recipe for {model} ({path.name} not among {', '.join(shipped) or 'none'}); "
                            "pass --recipe FILE")
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides)
    recipe = recipe_from_dict(raw, source=str(path))
    if model:
        if recipe.model.name and recipe.model.name != model:
            raise DataError(f"{path}: recipe is for model {recipe.model.name}, not {model}")
        recipe.model.name = model
    if not recipe.model.name:
        raise DataError(f"{path}: model.name is not set")
    if stage != recipe.stage:
        raise DataError(f"{path}: is a {recipe.stage} recipe; `edgesewer {stage}` needs a {stage} recipe")
    return recipe


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe (every field, overrides applied) into a run folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recipe.to_dict()
    data.pop("source", None)
    path.write_text(f"# resolved from {recipe.source}\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
