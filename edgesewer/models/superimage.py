"""Super-image video classifiers (VideoPipe report): a timm image backbone on 9 frames tiled 3 x 3.

The network is an ordinary multi-label image classifier whose input is the (3, 3*tile, 3*tile)
super-image made by `edgesewer.data.superimage`; so it trains with the shared engine, exports
like any classifier (one "input", "logits" [B, K]) and runs in the torch-free runtime's clip mode.
The sampling/tiling parameters travel in `cfg.extra` (grid, tile, frames, clip_seconds), so the
runtime rebuilds the same input from the sidecar alone.

Names: `superimage-<backbone>`; `superimage-resnet18` is the small one for CPU tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from torch import nn

from edgesewer.data.superimage import GRID, N_FRAMES
from edgesewer.data.video import class_set
from edgesewer.errors import ModelNotFound
from edgesewer.metrics.videopipe import NORMAL_THRESHOLD
from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.taxonomy import VIDEOPIPE_CODES, VIDEOPIPE_NORMAL
from edgesewer.train.checkpoint import read_torch_file

_PAPER = "VideoPipe 2022 challenge report: super-image video classification"
DEFAULT_CLIP_SECONDS = 4.0  # runtime window: 9 frames spread over this span

# registered name -> (timm architecture, default tile side)
SUPERIMAGE_ARCH: dict[str, tuple[str, int]] = {
    "superimage-convnext-base": ("convnext_base", 224),
    "superimage-tresnet-m": ("tresnet_m", 224),
    "superimage-nfnet-l0": ("eca_nfnet_l0", 224),
    "superimage-efficientnet-b0": ("efficientnet_b0", 224),
    "superimage-resnet18": ("resnet18", 112),
}


def superimage_cfg(name: str, tile: int | None = None, classes: Sequence[str] = VIDEOPIPE_CODES,
                   clip_seconds: float = DEFAULT_CLIP_SECONDS) -> ModelCfg:
    """The ModelCfg of a super-image model: input = GRID * tile, ImageNet statistics, sampling in extra."""
    arch, default_tile = SUPERIMAGE_ARCH[name]
    tile = tile or default_tile
    classes = tuple(classes)
    extra: dict[str, Any] = {"arch": arch, "grid": GRID, "tile": tile, "frames": N_FRAMES,
                             "clip_seconds": float(clip_seconds)}
    if VIDEOPIPE_NORMAL in classes:  # the post-processing rule needs an explicit normal class
        extra.update(normal_class=VIDEOPIPE_NORMAL, normal_threshold=NORMAL_THRESHOLD)
    return ModelCfg(name=name, task="video", input_size=GRID * tile, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    classes=classes, interpolation="bilinear", paper=_PAPER, extra=extra)


def _resolve_classes(classes: Sequence[str] | str | None, num_classes: int | None) -> tuple[str, ...]:
    if isinstance(classes, str):
        resolved = class_set(classes)
    elif classes is not None:
        resolved = tuple(classes)
    elif num_classes is not None and num_classes != len(VIDEOPIPE_CODES):
        resolved = tuple(f"c{i}" for i in range(num_classes))
    else:
        resolved = VIDEOPIPE_CODES
    if num_classes is not None and num_classes != len(resolved):
        raise ValueError(f"num_classes={num_classes} but {len(resolved)} classes were named")
    return resolved


def load_frame_weights(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Initialise a super-image model from a frame classifier of the same timm architecture.

    The VideoPipe recipe starts from ImageNet weights; offline, a frame classifier trained on the
    project's own stills plays that role. `path` is an edgesewer checkpoint (`{"model": state}`) or
    a plain state dict. Tensors are copied by name where the shapes agree (the head too, when the
    classes match: a super-image logit then starts as the frame head on the tiles' pooled features).
    Returns {"loaded", "skipped"}; raises ModelNotFound when less than half of the backbone fits.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"{path}: no such frame-classifier checkpoint")
    state: Any = read_torch_file(path, "frame-classifier checkpoint")
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ModelNotFound(f"{path}: holds no state dict")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    head = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "fc") + "."  # timm names its head module
    backbone = [k for k in own if not k.startswith(head)]
    if sum(k in fits for k in backbone) < len(backbone) / 2:
        raise ModelNotFound(f"{path}: only {len(fits)} of {len(own)} tensors fit {model.cfg.extra['arch']}; "
                            "initialise from a frame classifier of the same architecture")
    model.load_state_dict(fits, strict=False)
    return {"loaded": len(fits), "skipped": len(own) - len(fits)}


def create_superimage(name: str, *, num_classes: int | None = None, classes: Sequence[str] | str | None = None,
                      img_size: int | None = None, tile_size: int | None = None, pretrained: bool = False,
                      drop_path_rate: float = 0.0, clip_seconds: float = DEFAULT_CLIP_SECONDS,
                      backbone_ckpt: str | Path | None = None, **timm_kwargs: Any) -> nn.Module:
    """Build a registered super-image model.

    Args:
        classes: class names, or a class-set name ("videopipe" default, "sewerml").
        img_size: super-image side (must be divisible by 3); `tile_size` is the alternative.
        pretrained: ImageNet weights from timm (needs internet; never used by tests).
        clip_seconds: default time span the runtime spreads the 9 frames over.
        backbone_ckpt: initialise from a same-architecture frame classifier (`load_frame_weights`).
    """
    if img_size is not None:
        if img_size % GRID:
            raise ValueError(f"img_size {img_size} is not divisible by the {GRID}x{GRID} grid")
        if tile_size is not None and tile_size * GRID != img_size:
            raise ValueError(f"img_size {img_size} and tile_size {tile_size} disagree")
        tile_size = img_size // GRID
    resolved = _resolve_classes(classes, num_classes)
    cfg = superimage_cfg(name, tile_size, resolved, clip_seconds)
    arch = cfg.extra["arch"]
    if drop_path_rate:
        timm_kwargs["drop_path_rate"] = drop_path_rate
    model = timm.create_model(arch, pretrained=pretrained, num_classes=len(resolved), **timm_kwargs)
    model.cfg = dataclasses.replace(cfg, extra=dict(cfg.extra))
    if backbone_ckpt is not None:
        counts = load_frame_weights(model, backbone_ckpt)
        model.cfg.extra["init"] = {"frame_weights": str(backbone_ckpt), **counts}
    return model


@register_model(superimage_cfg("superimage-convnext-base"))
def superimage_convnext_base(**kwargs: Any) -> nn.Module:
    """ConvNeXt-Base on a 3x3 super-image (672 px with 224 px tiles)."""
    return create_superimage("superimage-convnext-base", **kwargs)


@register_model(superimage_cfg("superimage-tresnet-m"))
def superimage_tresnet_m(**kwargs: Any) -> nn.Module:
    """TResNet-M on a 3x3 super-image (672 px with 224 px tiles)."""
    return create_superimage("superimage-tresnet-m", **kwargs)


@register_model(superimage_cfg("superimage-nfnet-l0"))
def superimage_nfnet_l0(**kwargs: Any) -> nn.Module:
    """ECA-NFNet-L0 on a 3x3 super-image (672 px with 224 px tiles)."""
    return create_superimage("superimage-nfnet-l0", **kwargs)


@register_model(superimage_cfg("superimage-efficientnet-b0"))
def superimage_efficientnet_b0(**kwargs: Any) -> nn.Module:
    """EfficientNet-B0 on a 3x3 super-image (672 px with 224 px tiles); the edge-friendly one."""
    return create_superimage("superimage-efficientnet-b0", **kwargs)


@register_model(superimage_cfg("superimage-resnet18"))
def superimage_resnet18(**kwargs: Any) -> nn.Module:
    """ResNet-18 on a 3x3 super-image (336 px with 112 px tiles); small enough for CPU tests."""
    return create_superimage("superimage-resnet18", **kwargs)
