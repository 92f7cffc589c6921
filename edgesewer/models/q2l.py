"""Query2Label and MA-Q2L on a ResNet-101 (MA-Q2L paper; released code's configuration).

ResNet-101 layer4 (2048 x 14 x 14 at 448 px, FrozenBatchNorm, stem + layer1 frozen) -> no input
projection (2048 == hidden) -> 1-layer encoder with DETR sine positions -> 2-layer decoder of 17
learned label queries -> one linear per class on its own query.

MA-Q2L adds (a) a CAM attention mask: a bias-free Linear 2048 -> K on the backbone tokens gives
`[B, K, HW]`, added unscaled to the cross-attention logits of every head before the softmax, and
(b) label self-attention after the cross-attention in each decoder layer. Its ASL loss lives in
`edgesewer.models.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import ResNet101_Weights, resnet101
from torchvision.ops.misc import FrozenBatchNorm2d

from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.models.transformer import LabelTransformer, sine_position_encoding
from edgesewer.models.vit import specialise_cfg
from edgesewer.taxonomy import SEWER_CODES

_PAPER = "MA-Q2L: multi-label sewer defect classification with masked attention (arXiv 2408.00489)"


class GroupWiseLinear(nn.Module):
    """`out[b, k] = <W_k, h[b, k]> + b_k`: an independent linear classifier per label query."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(1, num_classes, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, num_classes).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return (self.weight * x).sum(-1) + self.bias


def resnet101_trunk(pretrained: bool = False) -> nn.Sequential:
    """ResNet-101 up to layer4 with FrozenBatchNorm; stem and layer1 get no gradients.

    `pretrained` loads torchvision's ImageNet-1k weights (downloads; only when asked).
    """
    weights = ResNet101_Weights.IMAGENET1K_V1 if pretrained else None
    net = resnet101(weights=weights, norm_layer=FrozenBatchNorm2d)
    trunk = nn.Sequential()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        trunk.add_module(name, getattr(net, name))
    for name in ("conv1", "bn1", "layer1"):
        for p in getattr(trunk, name).parameters():
            p.requires_grad_(False)
    return trunk


class Query2Label(nn.Module):
    """Q2L (`cam_mask=False, label_self_attn=False`) or MA-Q2L (both True).

    `forward(x)` -> logits `[B, K]`; `forward(x, return_cam=True)` -> (logits, cam `[B, K, h, w]`),
    the raw class activation map that MA-Q2L adds to the cross-attention (for localisation).
    """

    def __init__(
        self,
        num_classes: int = 17,
        img_size: int = 448,
        hidden_dim: int = 2048,
        num_heads: int = 4,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 2,
        ffn_dim: int = 8192,
        dropout: float = 0.1,
        cam_mask: bool = False,
        label_self_attn: bool = False,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if hidden_dim != 2048:
            raise ValueError("hidden_dim must equal the ResNet-101 feature width (2048): there is no input projection")
        self.num_classes = num_classes
        self.backbone = resnet101_trunk(pretrained)
        self.transformer = LabelTransformer(
            hidden_dim, num_heads, num_encoder_layers, num_decoder_layers, ffn_dim, dropout, label_self_attn
        )
        self.query_embed = nn.Embedding(num_classes, hidden_dim)  # N(0, 1) init, as Q2L
        # Created after the transformer's xavier init, so it keeps PyTorch's default Linear init (as released).
        self.cam = nn.Linear(hidden_dim, num_classes, bias=False) if cam_mask else None
        self.head = GroupWiseLinear(num_classes, hidden_dim)
        grid = math.ceil(img_size / 32)
        # Precomputed for the configured size (a constant in the exported graph); recomputed on the fly otherwise.
        self.register_buffer("pos", sine_position_encoding(grid, grid, hidden_dim // 2), persistent=False)

    def _positions(self, height: int, width: int, like: Tensor) -> Tensor:
        # While tracing for ONNX the input has the configured size (export uses cfg.input_size); not
        # comparing traced sizes keeps the trace free of Python-bool conversions.
        if torch.jit.is_tracing() or (height == width and self.pos.shape[1] == height * width):
            return self.pos.to(like.dtype)
        return sine_position_encoding(height, width, like.shape[-1] // 2).to(like)

    def forward(self, x: Tensor, return_cam: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        feat = self.backbone(x)  # [B, 2048, h, w]
        batch, _, height, width = feat.shape
        src = feat.flatten(2).transpose(1, 2)  # [B, hw, 2048]
        pos = self._positions(height, width, src)
        cam = None
        if self.cam is not None:
            # [B, K, hw] per sample. The released code tiles it with `repeat(num_heads, 1, 1)` against
            # a (b*H + h)-ordered batch, so head h of sample b gets sample (b*H + h) % B's map when
            # B > 1; here each sample's map reaches only its own heads (see transformer.Attention).
            cam = self.cam(src).transpose(1, 2)
        hs = self.transformer(src, pos, self.query_embed.weight, cam)
        logits = self.head(hs)
        if not return_cam:
            return logits
        if cam is None:
            raise ValueError("this model has no CAM attention mask (use ma-q2l-r101)")
        return logits, cam.reshape(batch, self.num_classes, height, width)


class LogitsAndCam(nn.Module):
    """Export wrapper: `forward(x)` -> (logits `[B, K]`, cam `[B, K, h, w]`) for ONNX/TensorRT."""

    def __init__(self, model: Query2Label) -> None:
        super().__init__()
        self.model = model
        self.cfg = getattr(model, "cfg", None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(x, return_cam=True)


def _q2l_cfg(name: str, masked: bool) -> ModelCfg:
    return ModelCfg(
        name=name,
        task="classify",
        input_size=448,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        classes=SEWER_CODES,
        paper=_PAPER,
        extra={"backbone": "resnet101", "cam_mask": masked, "label_self_attn": masked, "outputs_cam": masked,
               # INT8: entropy (KL) clipping cost MA-Q2L 2.3 F2_CIW points on synthetic data, percentile +0.97
               # (the attention logits carry the unscaled CAM bias, whose range KL clips); vit-t is fine either way.
               "calib_method": "percentile",
               # `edgesewer models` also counts it without the attention modules: the paper's 143M
               "count_without_attention": True},
    )


def _create(
    name: str,
    masked: bool,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    img_size: int | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> Query2Label:
    cfg, n_cls = specialise_cfg(_q2l_cfg(name, masked), img_size, classes, num_classes)
    model = Query2Label(
        num_classes=n_cls,
        img_size=cfg.input_size,
        cam_mask=masked,
        label_self_attn=masked,
        pretrained=pretrained,
        **kwargs,
    )
    model.cfg = cfg
    return model


@register_model(_q2l_cfg("q2l-r101", masked=False))
def q2l_r101(**kwargs: Any) -> Query2Label:
    """Query2Label R101 baseline (no decoder self-attention); about 193.6M parameters with 17 classes."""
    return _create("q2l-r101", masked=False, **kwargs)


@register_model(_q2l_cfg("ma-q2l-r101", masked=True))
def ma_q2l_r101(**kwargs: Any) -> Query2Label:
    """MA-Q2L R101: CAM attention mask + label self-attention; about 227.3M parameters with 17 classes."""
    return _create("ma-q2l-r101", masked=True, **kwargs)
