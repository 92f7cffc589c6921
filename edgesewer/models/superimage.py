"""Super-image video classifiers (VideoPipe report): a timm image backbone on 9 frames tiled 3 x 3.

The network is an ordinary multi-label image classifier whose input is the (3, 3*tile, 3*tile)
super-image made by `edgesewer.data.superimage`; so it trains with the shared engine, exports
like any classifier (one "input", "logits" [B, K]) and runs in the torch-free runtime's clip mode.
The sampling/tiling parameters travel in `cfg.extra` (grid, tile, frames, clip_seconds), so the
runtime rebuilds the same input from the sidecar alone.

Names: `superimage-<backbone>`; `superimage-resnet18` is the small one for CPU tests. The report's
own models (`REPORT_MODELS`: TResNet-XL + ML-Decoder, ConvNeXt-B IN-22k@384, NFNet-F3, NFNet-F6,
EfficientNet-L2) are registered at its input, 3 x 448 = 1344 px (NFNet-F6 3 x 384 = 1152 px); their
recipes are `train/<name>.yaml` with the report's CV/LB mAP as targets (`REPORT_TARGETS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from timm.layers.ml_decoder import MLDecoder
from torch import nn
from torch.nn import functional as F

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
    # the VideoPipe report's models, at its input size (3 x 448 = 1344 px; NFNet-F6 3 x 384 = 1152 px)
    "superimage-tresnet-xl": ("tresnet_xl", 448),  # + ML-Decoder head (ML_DECODER_MODELS)
    "superimage-convnext-base-384": ("convnext_base.fb_in22k_ft_in1k_384", 448),
    "superimage-nfnet-f3": ("dm_nfnet_f3", 448),
    "superimage-nfnet-f6": ("dm_nfnet_f6", 384),
    "superimage-efficientnet-l2": ("tf_efficientnet_l2", 448),
}
ML_DECODER_MODELS = frozenset({"superimage-tresnet-xl"})
REPORT_MODELS = ("superimage-tresnet-xl", "superimage-convnext-base-384", "superimage-nfnet-f3",
                 "superimage-nfnet-f6", "superimage-efficientnet-l2")
# The report's 5-fold CV mAP and leaderboard mAP per model (its results table), and the ensemble after the
# p(normal) > 0.9 post-processing. Video Swin-B (edgesewer.models.videoswin) is the fifth member, weight 0.1.
REPORT_TARGETS: dict[str, dict[str, float]] = {
    "superimage-tresnet-xl": {"cv_mAP": 67.19, "lb_mAP": 68.299},
    "superimage-convnext-base-384": {"cv_mAP": 69.89, "lb_mAP": 70.287},
    "superimage-nfnet-f3": {"cv_mAP": 71.41, "lb_mAP": 71.109},
    "superimage-nfnet-f6": {"cv_mAP": 70.45, "lb_mAP": 70.769},
    "superimage-efficientnet-l2": {"cv_mAP": 70.95, "lb_mAP": 70.853},
}
REPORT_ENSEMBLE_LB_MAP = 72.181  # all five members (Video Swin-B at weight 0.1), after post-processing
REPORT_SWIN_WEIGHT = 0.1  # the report gives only Swin's weight; the image models share the rest


class MLDecoderHead(MLDecoder):
    """timm's ML-Decoder (`timm.layers.ml_decoder.MLDecoder`) with a forward that runs on current PyTorch.

    Same modules, parameters and state-dict keys as timm's class (so ML-Decoder checkpoints load):
    a linear + ReLU projection of the spatial tokens to 768, one transformer decoder layer without
    self-attention (timm's `TransformerDecoderLayerOptimal`), non-learnable queries (one group per
    class up to 100 groups) and the group fully-connected pooling. timm's own forward goes through
    `nn.TransformerDecoder`, which on PyTorch >= 2.1 reads `layer.self_attn` and passes
    `tgt_is_causal`, neither of which timm's layer has (AttributeError); here the layers are called
    directly (`nn.TransformerDecoder` with `norm=None` does nothing else), and the per-group loop
    of matmuls is one batched matmul (same numbers, a smaller ONNX graph).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2) if x.ndim == 4 else x  # [B, HW, C]
        memory = F.relu(self.embed_standart(tokens)).transpose(0, 1)  # [HW, B, 768]
        h = self.query_embed.weight.unsqueeze(1).expand(-1, memory.shape[1], -1)  # [G, B, 768]
        for layer in self.decoder.layers:
            h = layer(h, memory)
        out = torch.matmul(h, self.duplicate_pooling)  # [G, B, 768] @ [G, 768, d] -> [G, B, d]
        out = out.transpose(0, 1).flatten(1)[:, :self.num_classes]
        return out + self.duplicate_pooling_bias


def add_ml_decoder(model: nn.Module, num_groups: int = -1, decoder_embedding: int = 768) -> nn.Module:
    """Replace a timm TResNet's pooling + fc head by an ML-Decoder on the last feature map (in place).

    As `timm.layers.ml_decoder.add_ml_decoder_head` does for TResNet (which this timm's TResNet no
    longer matches: its head is a ClassifierHead), with `MLDecoderHead`.
    """
    if not hasattr(model, "head") or not hasattr(model, "num_features"):
        raise ValueError(f"{type(model).__name__}: no `head` to replace with an ML-Decoder")
    model.head = MLDecoderHead(model.num_classes, num_of_groups=num_groups, decoder_embedding=decoder_embedding,
                               initial_num_features=model.num_features)
    if hasattr(model, "drop_rate"):  # ML-Decoder has its own dropout
        model.drop_rate = 0.0
    return model


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
                      backbone_ckpt: str | Path | None = None, arch: str | None = None,
                      grad_checkpointing: bool = False, **timm_kwargs: Any) -> nn.Module:
    """Build a registered super-image model.

    Args:
        classes: class names, or a class-set name ("videopipe" default, "sewerml").
        img_size: super-image side (must be divisible by 3); `tile_size` is the alternative.
        pretrained: ImageNet weights from timm (needs internet; never used by tests).
        clip_seconds: default time span the runtime spreads the 9 frames over.
        backbone_ckpt: initialise from a same-architecture frame classifier (`load_frame_weights`).
        arch: another timm architecture of the same family instead of the registered one (e.g. a
            reduced-depth NFNet-F0 for the F6 entry in CPU tests); recorded in cfg.extra["arch"].
        grad_checkpointing: timm's `set_grad_checkpointing` (activation recomputation: what lets a
            1344 px super-image train on a 24 GB GPU); a training setting, not part of the weights.
    """
    if img_size is not None:
        if img_size % GRID:
            raise ValueError(f"img_size {img_size} is not divisible by the {GRID}x{GRID} grid")
        if tile_size is not None and tile_size * GRID != img_size:
            raise ValueError(f"img_size {img_size} and tile_size {tile_size} disagree")
        tile_size = img_size // GRID
    resolved = _resolve_classes(classes, num_classes)
    cfg = superimage_cfg(name, tile_size, resolved, clip_seconds)
    if arch is not None:
        cfg.extra["arch"] = arch
    arch = cfg.extra["arch"]
    if drop_path_rate:
        timm_kwargs["drop_path_rate"] = drop_path_rate
    model = timm.create_model(arch, pretrained=pretrained, num_classes=len(resolved), **timm_kwargs)
    if name in ML_DECODER_MODELS:
        add_ml_decoder(model)
        cfg.extra["head"] = "ml_decoder"
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
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


@register_model(superimage_cfg("superimage-tresnet-xl"))
def superimage_tresnet_xl(**kwargs: Any) -> nn.Module:
    """TResNet-XL + ML-Decoder head on a 3x3 super-image of 448 px tiles (1344 px): the report's model."""
    return create_superimage("superimage-tresnet-xl", **kwargs)


@register_model(superimage_cfg("superimage-convnext-base-384"))
def superimage_convnext_base_384(**kwargs: Any) -> nn.Module:
    """ConvNeXt-B (ImageNet-22k, fine-tuned on 1k at 384) on 448 px tiles (1344 px): the report's model."""
    return create_superimage("superimage-convnext-base-384", **kwargs)


@register_model(superimage_cfg("superimage-nfnet-f3"))
def superimage_nfnet_f3(**kwargs: Any) -> nn.Module:
    """NFNet-F3 (DeepMind weights) on 448 px tiles (1344 px): the report's best single model."""
    return create_superimage("superimage-nfnet-f3", **kwargs)


@register_model(superimage_cfg("superimage-nfnet-f6"))
def superimage_nfnet_f6(**kwargs: Any) -> nn.Module:
    """NFNet-F6 on 384 px tiles (1152 px, the report's size for F6)."""
    return create_superimage("superimage-nfnet-f6", **kwargs)


@register_model(superimage_cfg("superimage-efficientnet-l2"))
def superimage_efficientnet_l2(**kwargs: Any) -> nn.Module:
    """EfficientNet-L2 (TF port, noisy student) on 448 px tiles (1344 px): the report's largest model."""
    return create_superimage("superimage-efficientnet-l2", **kwargs)
