"""SCNet: SegNet-shaped crack segmenter with scale-space attention and a fused side-output head.

Layout (SPEC 5.3), for an input of 4 channels (RGB in [-1, 1] + binary edge map), H and W
multiples of 32:

    encoder    5 VGG-16 blocks (2-2-3-3-3 conv3x3, 64-128-256-512-512 channels, instance norm,
               ReLU); after each block a scale-space attention (SSA) module, then 2x2 max-pooling
               whose switches are kept.
    decoder    mirror image: unpool with the encoder's switches (standard ops, see `unpool.py`),
               conv blocks 512-512-512 / 512-512-256 / 256-256-128 / 128-64 / 64-64, an SSA
               module after each block.
    SSA        F_a = sigmoid(Conv1x1_{C->1}(F)) * F continues along the main path;
               F_r = Conv1x1_{C->C'}(F_a) is the scale feature handed to the heads. No pooling.
    enhancement encoder
               walks down the scales fusing each block into the running feature:
               H_1 = R_1,  H_i = ReLU(Conv3x3(concat(maxpool(H_{i-1}), R_i)))  (R_i = encoder F_r).
    fused network
               side_i = upsample(Conv1x1(concat(H_i, D_i)))  (D_i = decoder F_r at scale i),
               fused = Conv3x3(concat(side_1..side_5)).

Convolutions followed by instance norm carry no bias (the norm's affine shift replaces it), so
the SegNet trunk is 29.47M parameters and the whole network 29.48M with the paper's C' = 1
("empirically found C' = 1 giving best performance"; 29.53M with C' = 16); the paper reports 29.46M.

Outputs:
    training mode: ``{"fused": logits [B,1,H,W], "sides": (5 x logits [B,1,H,W])}``, scale 1
                   (full resolution) first.
    eval mode:     crack probability ``sigmoid(fused)`` [B,1,H,W] only, so the exported graph is
                   ``input -> prob``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from edgesewer.errors import ModelNotFound
from edgesewer.modelcfg import ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.models.unpool import pool_with_switches, unpool_with_switches

ENCODER_WIDTHS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# Decoder block i (same scale as encoder block i) ends with the width the next shallower block expects.
DECODER_WIDTHS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 64), (256, 256, 128), (512, 512, 256), (512, 512, 512))
SIDE_WEIGHTS: tuple[float, ...] = (0.5, 0.75, 1.0, 0.75, 0.5)

SCNET_CFG = ModelCfg(
    name="scnet",
    task="segment",
    input_size=256,
    in_chans=4,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    classes=("crack",),
    paper="SCNet",
    # The 4th input channel: which detector of edgesewer.data.edges builds it (runtime reads this).
    extra={"edge": "canny", "input": "rgb[-1,1]+edge"},
)


class ConvNormReLU(nn.Sequential):
    """3x3 convolution (no bias) -> instance norm (affine) -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(inplace=True),
        )


def conv_stack(cin: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers = []
    for cout in widths:
        layers.append(ConvNormReLU(cin, cout))
        cin = cout
    return nn.Sequential(*layers)


class ScaleSpaceAttention(nn.Module):
    """F_a = sigmoid(Conv_{C->1}(F)) * F (main path); F_r = Conv_{C->C'}(F_a) (scale feature)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, 1, 1)
        self.reduce = nn.Conv2d(channels, reduced, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended = torch.sigmoid(self.gate(x)) * x
        return attended, self.reduce(attended)


class SCNet(nn.Module):
    """SCNet crack segmenter; see the module docstring for the layout and the outputs."""

    def __init__(self, in_chans: int = 4, side_channels: int = 1) -> None:
        super().__init__()
        self.cfg = dataclasses.replace(SCNET_CFG, in_chans=in_chans, extra=dict(SCNET_CFG.extra))
        self.encoder = nn.ModuleList()
        self.encoder_ssa = nn.ModuleList()
        cin = in_chans
        for widths in ENCODER_WIDTHS:
            self.encoder.append(conv_stack(cin, widths))
            self.encoder_ssa.append(ScaleSpaceAttention(widths[-1], side_channels))
            cin = widths[-1]
        self.decoder = nn.ModuleList()
        self.decoder_ssa = nn.ModuleList()
        for enc_widths, dec_widths in zip(ENCODER_WIDTHS, DECODER_WIDTHS):
            self.decoder.append(conv_stack(enc_widths[-1], dec_widths))
            self.decoder_ssa.append(ScaleSpaceAttention(dec_widths[-1], side_channels))
        self.enhance = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * side_channels, side_channels, 3, padding=1), nn.ReLU(inplace=True))
            for _ in ENCODER_WIDTHS[1:]
        )
        self.side_heads = nn.ModuleList(nn.Conv2d(2 * side_channels, 1, 1) for _ in ENCODER_WIDTHS)
        self.fuse = nn.Conv2d(len(ENCODER_WIDTHS), 1, 3, padding=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform convolution weights, zero biases, unit instance-norm scale (the paper's init)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.InstanceNorm2d) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor | tuple[torch.Tensor, ...]]:
        """Fused and side logits whatever the mode: {"fused": [B,1,H,W], "sides": 5 x [B,1,H,W]}."""
        height, width = x.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"SCNet needs height and width divisible by 32, got {height}x{width}")
        encoder_scale_features, switches = [], []
        for block, ssa in zip(self.encoder, self.encoder_ssa):
            x, scale_feature = ssa(block(x))
            encoder_scale_features.append(scale_feature)
            x, switch = pool_with_switches(x)
            switches.append(switch)

        decoder_scale_features: list[torch.Tensor] = [x] * len(self.decoder)  # filled deepest first
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](unpool_with_switches(x, switches[i]))
            x, decoder_scale_features[i] = self.decoder_ssa[i](x)

        enhanced = [encoder_scale_features[0]]
        for i, conv in enumerate(self.enhance, start=1):
            deeper = torch.cat([F.max_pool2d(enhanced[-1], 2), encoder_scale_features[i]], dim=1)
            enhanced.append(conv(deeper))

        sides = []
        for i, head in enumerate(self.side_heads):
            side = head(torch.cat([enhanced[i], decoder_scale_features[i]], dim=1))
            if i > 0:
                side = F.interpolate(side, size=(height, width), mode="bilinear", align_corners=False)
            sides.append(side)
        fused = self.fuse(torch.cat(sides, dim=1))
        return {"fused": fused, "sides": tuple(sides)}

    def forward(self, x: torch.Tensor):
        """Training: dict of logits (see `forward_logits`). Eval/export: crack probability [B,1,H,W]."""
        out = self.forward_logits(x)
        if self.training:
            return out
        return torch.sigmoid(out["fused"])


@register_model(SCNET_CFG)
def scnet(pretrained: bool = False, num_classes: int = 1, in_chans: int = 4, side_channels: int = 1) -> SCNet:
    """Build SCNet. There are no public SCNet weights: it trains from Xavier init, as in the paper."""
    if pretrained:
        raise ModelNotFound("scnet has no pretrained weights (the paper trains it from Xavier init); drop --pretrained")
    if num_classes != 1:
        raise ModelNotFound(f"scnet segments one class (crack), not {num_classes}")
    return SCNet(in_chans=in_chans, side_channels=side_channels)
