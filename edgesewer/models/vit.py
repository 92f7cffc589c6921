"""ViT-Tiny/16 and ViT-Small/16 multi-label classifiers (DINO-SSL paper), built with timm.

`vit-t` / `vit-s` are trained supervised; `vit-t-dino` / `vit-s-dino` are the same networks
fine-tuned from a DINO backbone pretrained on sewer images (`backbone_ckpt=PATH`, written by
`edgesewer pretrain`, or an official DINO `checkpoint.pth`). Nothing is downloaded unless
`pretrained=True` is asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from edgesewer.errors import ModelNotFound
from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD, ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.taxonomy import SEWER_CODES
from edgesewer.train.checkpoint import read_torch_file

_PAPER = "Self-supervised DINO pretraining of ViT-T/S on sewer footage"

# timm architecture per registered name; DINO variants share the architecture.
VIT_ARCH = {
    "vit-t": "vit_tiny_patch16_224",
    "vit-s": "vit_small_patch16_224",
    "vit-t-dino": "vit_tiny_patch16_224",
    "vit-s-dino": "vit_small_patch16_224",
}


def specialise_cfg(
    cfg: ModelCfg, img_size: int | None = None, classes: Sequence[str] | None = None, num_classes: int | None = None
) -> tuple[ModelCfg, int]:
    """The registered cfg adjusted to an instance's input size and classes; returns (cfg, num_classes).

    `classes` wins over `num_classes`; a bare `num_classes` that differs from the registered
    class list gets placeholder names `c0, c1, ...` so that the cfg always matches the head.
    """
    if classes is not None:
        classes = tuple(classes)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes} but {len(classes)} class names were given")
    elif num_classes is not None and num_classes != len(cfg.classes):
        classes = tuple(f"c{i}" for i in range(num_classes))
    else:
        classes = cfg.classes
    new = dataclasses.replace(cfg, input_size=img_size or cfg.input_size, classes=classes, extra=dict(cfg.extra))
    return new, len(classes)


def _vit_cfg(name: str) -> ModelCfg:
    dino = name.endswith("-dino")
    return ModelCfg(
        name=name,
        task="classify",
        input_size=224,
        mean=SEWERML_MEAN,
        std=SEWERML_STD,
        classes=SEWER_CODES,
        interpolation="bicubic",
        paper=_PAPER,
        extra={"arch": VIT_ARCH[name], "init": "dino-ssl" if dino else "supervised"},
    )


def _read_checkpoint(path: Path) -> Any:
    if not path.is_file():
        raise ModelNotFound(f"{path}: no such backbone checkpoint file")
    return read_torch_file(path, "backbone checkpoint")


def extract_backbone_state(checkpoint: Any, which: str = "teacher") -> dict[str, torch.Tensor]:
    """Backbone weights (timm ViT key names) from any of the checkpoint layouts we meet.

    Handles: official DINO `{"student": sd, "teacher": sd, ...}` with `module.backbone.` /
    `backbone.` prefixes; our `DINOWrapper` state dict (`teacher.backbone.*`), bare or under a
    `model` / `state_dict` key; and a plain backbone state dict. Head weights are dropped.
    """
    if which not in ("teacher", "student"):
        raise ValueError(f"which must be 'teacher' or 'student', not {which!r}")
    state: Any = checkpoint
    if isinstance(state, Mapping) and isinstance(state.get(which), Mapping):
        state = state[which]  # official DINO layout
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ModelNotFound(f"checkpoint holds a {type(state).__name__}, not a state dict")
    wrapper_prefix = f"{which}.backbone."
    if any(k.startswith(wrapper_prefix) for k in state):
        state = {k[len(wrapper_prefix):]: v for k, v in state.items() if k.startswith(wrapper_prefix)}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith("head.") or not isinstance(value, torch.Tensor):
            continue
        out[key] = value
    return out


def load_backbone_checkpoint(model: nn.Module, path: str | Path, which: str = "teacher", name: str = "vit") -> None:
    """Load DINO backbone weights into a timm ViT classifier; the head stays freshly initialised.

    The absolute position embedding is resampled when the checkpoint was trained at another
    resolution. Any other mismatch raises `ModelNotFound` naming the first offending keys.
    """
    path = Path(path)
    state = extract_backbone_state(_read_checkpoint(path), which)
    own = model.state_dict()
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        if state["pos_embed"].shape[-1] == own["pos_embed"].shape[-1]:
            grid = list(model.patch_embed.grid_size)
            state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=grid, num_prefix_tokens=1)
    wanted = {k for k in own if not k.startswith("head.")}
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_bad = sorted(k for k in wanted & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shape_bad:
        parts = []
        if shape_bad:
            k = shape_bad[0]
            got, want = tuple(state[k].shape), tuple(own[k].shape)
            parts.append(f"{len(shape_bad)} shape mismatches (e.g. {k}: {got} in the checkpoint, {want} in the model)")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise ModelNotFound(f"{path}: {which} backbone does not fit {name}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)


def create_vit(
    name: str,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    pretrained: bool = False,
    img_size: int | None = None,
    backbone_ckpt: str | Path | None = None,
    ckpt_key: str = "teacher",
    drop_path_rate: float = 0.0,
    attn_init: str = "default",
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a registered ViT variant; see the module docstring for the weight sources.

    `attn_init="mimetic"` starts every attention layer as a trained ViT's look (`mimetic_init`); weights
    loaded afterwards (a backbone, a checkpoint) replace it.
    """
    if attn_init not in ("default", "mimetic"):
        raise ValueError(f"attn_init must be 'default' or 'mimetic', not {attn_init!r}")
    cfg, n_cls = specialise_cfg(_vit_cfg(name), img_size, classes, num_classes)
    arch = VIT_ARCH[name]
    pretrained_tag = arch
    if pretrained and name.endswith("-dino"):
        if name == "vit-t-dino":
            raise ModelNotFound(
                "there are no public DINO ViT-T weights: pretrain with `edgesewer pretrain` and pass backbone_ckpt=PATH"
            )
        pretrained_tag = f"{arch}.dino"  # ImageNet DINO; sewer-domain DINO comes via backbone_ckpt
    model = timm.create_model(
        pretrained_tag,
        pretrained=pretrained,
        num_classes=n_cls,
        img_size=cfg.input_size,
        drop_path_rate=drop_path_rate,
        **timm_kwargs,
    )
    if attn_init == "mimetic":
        mimetic_init(model)
    if backbone_ckpt is not None:
        load_backbone_checkpoint(model, backbone_ckpt, which=ckpt_key, name=name)
        cfg.extra["backbone_ckpt"] = str(backbone_ckpt)
    model.cfg = cfg
    return model


@torch.no_grad()
def mimetic_init(model: nn.Module, alpha_qk: float = 0.7, beta_qk: float = 0.7, alpha_vo: float = 0.4,
                 beta_vo: float = 0.4, seed: int = 0) -> None:
    """Mimetic initialisation of every self-attention layer (Trockman & Kolter, ICML 2023).

    Trained ViTs have W_q W_k^T close to a positive identity (a token attends to tokens like itself, which
    with the position embedding means its neighbours) and W_v W_proj close to a negative identity. Per
    head, W_q W_k^T is set to 0.7 Z + 0.7 I by a truncated SVD, and over the layer W_v W_proj to 0.4 Z - 0.4 I
    (Z Gaussian with variance 1/d; the paper's values for ViT-Tiny). Measured on
    synthetic inspection frames on a CPU (train/README.md): a ViT-T from random weights stays at chance for
    tens of minutes; this start is what the paper proposes for ViTs trained on small data from scratch.
    """
    gen = torch.Generator().manual_seed(seed)

    def factors(alpha: float, beta: float, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B), A @ B.T the best rank-`rank` fit of alpha Z + beta I, Z with N(0, 1/d) entries."""
        z = torch.randn(dim, dim, generator=gen) / dim ** 0.5
        u, sv, vh = torch.linalg.svd(alpha * z + beta * torch.eye(dim))
        root = sv[:rank].sqrt()
        return u[:, :rank] * root, vh[:rank].T * root

    for block in model.blocks:
        attn = block.attn
        dim, heads = attn.qkv.in_features, attn.num_heads
        head_dim = dim // heads
        qkv, proj = attn.qkv.weight, attn.proj.weight  # qkv rows: q | k | v, each `dim` wide; x @ W.T
        for h in range(heads):  # each head on its own: every head starts attending to similar tokens
            a, b = factors(alpha_qk, beta_qk, head_dim)
            qkv[h * head_dim:(h + 1) * head_dim] = a.T.to(qkv.dtype)
            qkv[dim + h * head_dim:dim + (h + 1) * head_dim] = b.T.to(qkv.dtype)
        # value -> output summed over the heads: full rank, so the -beta I part survives
        a, b = factors(alpha_vo, -beta_vo, dim)
        qkv[2 * dim:] = a.T.to(qkv.dtype)
        proj.copy_(b.to(proj.dtype))


def create_vit_backbone(name: str, img_size: int = 224, drop_path_rate: float = 0.0) -> nn.Module:
    """Head-less ViT (`forward` returns the normalised CLS token), for DINO pretraining."""
    model = timm.create_model(
        VIT_ARCH[name], pretrained=False, num_classes=0, img_size=img_size, drop_path_rate=drop_path_rate
    )
    model.embed_dim = model.num_features
    return model


@register_model(_vit_cfg("vit-t"))
def vit_t(**kwargs: Any) -> nn.Module:
    """ViT-Tiny/16 (192/12/3), supervised; 5.53M parameters with 17 classes."""
    return create_vit("vit-t", **kwargs)


@register_model(_vit_cfg("vit-s"))
def vit_s(**kwargs: Any) -> nn.Module:
    """ViT-Small/16 (384/12/6), supervised; 21.67M parameters with 17 classes."""
    return create_vit("vit-s", **kwargs)


@register_model(_vit_cfg("vit-t-dino"))
def vit_t_dino(**kwargs: Any) -> nn.Module:
    """ViT-Tiny/16 fine-tuned from a sewer DINO backbone (`backbone_ckpt=PATH`)."""
    return create_vit("vit-t-dino", **kwargs)


@register_model(_vit_cfg("vit-s-dino"))
def vit_s_dino(**kwargs: Any) -> nn.Module:
    """ViT-Small/16 fine-tuned from a sewer DINO backbone (`backbone_ckpt=PATH`)."""
    return create_vit("vit-s-dino", **kwargs)
