"""Video Swin-B (torchvision `swin3d_b`): the VideoPipe report's fifth ensemble member (weight 0.1).

Unlike the super-image models it sees a stack of frames: input "input" [B, T, 3, H, W] (the layout
of `edgesewer.data.video_torch.ClipFramesDataset`, T frames sampled uniformly over the whole video
as for the super-images), permuted inside the model to torchvision's [B, 3, T, H, W]. It trains with
`edgesewer video train --model video-swin3d-b` (recipe `train/video-swin3d-b.yaml`), scores videos
offline (`edgesewer video predict`), exports to ONNX like any classifier (`edgesewer export --model
video-swin3d-b [--frames T --imgsz S]`; the shifted-window masks are traced as constants, see
`_constant_attention_mask`) and runs in the runtime's clip mode (`edgesewer run --clip-model`,
T frames per window, `edgesewer.runtime.clip`).

The report gives Video Swin-B 64.8 mAP, 68.251 with EMA; it does not give its clip length or
resolution, so `frames` (default 32) and the 224 px side are Video Swin's Kinetics-400 settings.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from edgesewer.metrics.videopipe import NORMAL_THRESHOLD
from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.taxonomy import VIDEOPIPE_CODES, VIDEOPIPE_NORMAL

_PAPER = "VideoPipe 2022 challenge report: Video Swin-B ensemble member (torchvision swin3d_b)"
DEFAULT_FRAMES = 32
DEFAULT_SIZE = 224
REPORT_TARGETS = {"video-swin3d-b": {"mAP": 64.8, "mAP_ema": 68.251}}
ENSEMBLE_WEIGHT = 0.1  # the report's weight of Video Swin-B in the five-model ensemble


def swin3d_cfg(name: str = "video-swin3d-b", size: int = DEFAULT_SIZE, frames: int = DEFAULT_FRAMES,
               classes: Sequence[str] = VIDEOPIPE_CODES) -> ModelCfg:
    classes = tuple(classes)
    extra: dict[str, Any] = {"arch": "swin3d_b", "frames": int(frames), "tile": int(size), "video_kind": "clip",
                             "input_layout": "BTCHW", "ensemble_weight": ENSEMBLE_WEIGHT}
    if VIDEOPIPE_NORMAL in classes:
        extra.update(normal_class=VIDEOPIPE_NORMAL, normal_threshold=NORMAL_THRESHOLD)
    return ModelCfg(name=name, task="video", input_size=int(size), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    classes=classes, interpolation="bilinear", paper=_PAPER, extra=extra)


def window_labels(size_dhw: Sequence[int], window_size: Sequence[int], shift_size: Sequence[int]) -> np.ndarray:
    """(windows, window volume) region label of every position of the shifted windows, as torchvision's
    `_compute_attention_mask_3d` assigns them (its slices, in numpy)."""
    size, window, shift = ([int(v) for v in s] for s in (size_dhw, window_size, shift_size))
    labels = np.zeros(size, dtype=np.float32)
    slices = [((0, -window[i]), (-window[i], -shift[i]), (-shift[i], None)) for i in range(3)]
    count = 0
    for d in slices[0]:
        for h in slices[1]:
            for w in slices[2]:
                labels[d[0]:d[1], h[0]:h[1], w[0]:w[1]] = count
                count += 1
    n = [size[i] // window[i] for i in range(3)]
    labels = labels.reshape(n[0], window[0], n[1], window[1], n[2], window[2])
    return labels.transpose(0, 2, 4, 1, 3, 5).reshape(n[0] * n[1] * n[2], window[0] * window[1] * window[2])


def _constant_attention_mask(x: torch.Tensor, size_dhw, window_size, shift_size) -> torch.Tensor:
    # The region labels enter the traced graph as one small constant. torchvision builds them with
    # slice assignments, exported as ScatterND nodes; where a window fills a whole axis (shift 0) their
    # slices are empty, and onnxsim folds those zero-size ScatterNDs into a graph that ONNX Runtime
    # refuses to run ("updates tensor should have shape ...").
    labels = torch.from_numpy(window_labels(size_dhw, window_size, shift_size)).to(x.device, x.dtype)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return diff.masked_fill(diff != 0, float(-100.0)).masked_fill(diff == 0, float(0.0))


@contextlib.contextmanager
def _traceable_attention_masks() -> Iterator[None]:
    """While tracing (ONNX export), build the shifted-window masks from constants (`_constant_attention_mask`)."""
    from torchvision.models.video import swin_transformer

    original = swin_transformer._compute_attention_mask_3d
    swin_transformer._compute_attention_mask_3d = _constant_attention_mask
    try:
        yield
    finally:
        swin_transformer._compute_attention_mask_3d = original


class VideoSwin3D(nn.Module):
    """torchvision's Swin3D-B behind a [B, T, 3, H, W] input, with optional gradient checkpointing per stage."""

    def __init__(self, num_classes: int, pretrained: bool = False, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        from torchvision.models.video import Swin3D_B_Weights, swin3d_b

        if pretrained:
            self.net = swin3d_b(weights=Swin3D_B_Weights.KINETICS400_IMAGENET22K_V1)
            self.net.head = nn.Linear(self.net.head.in_features, num_classes)
        else:
            self.net = swin3d_b(num_classes=num_classes)
        # torchvision fixes the stochastic depth at 0.1 (rising linearly over the blocks): rescale it
        from torchvision.ops import StochasticDepth
        for module in self.net.modules():
            if isinstance(module, StochasticDepth):
                module.p = module.p * drop_path_rate / 0.1
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass (timm's switch, for a 24 GB GPU)."""
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            with _traceable_attention_masks():
                return self._forward(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.pos_drop(net.patch_embed(x.permute(0, 2, 1, 3, 4)))  # [B, T, 3, H, W] -> [B, 3, T, H, W]
        for stage in net.features:
            if self.grad_checkpointing and self.training and not torch.jit.is_tracing():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        x = net.norm(x).permute(0, 4, 1, 2, 3)
        return net.head(torch.flatten(net.avgpool(x), 1))


def create_swin3d(*, num_classes: int | None = None, classes: Sequence[str] | str | None = None,
                  img_size: int | None = None, frames: int = DEFAULT_FRAMES, pretrained: bool = False,
                  drop_path_rate: float = 0.1, grad_checkpointing: bool = False,
                  backbone_ckpt: str | None = None, **unused: Any) -> nn.Module:
    """Build `video-swin3d-b`. `pretrained`: torchvision's Kinetics-400 (IN-22k) weights (needs internet)."""
    from edgesewer.models.superimage import _resolve_classes

    if backbone_ckpt:
        raise ValueError("video-swin3d-b starts from torchvision's Kinetics weights (model.pretrained), "
                         "not from a frame classifier")
    if unused.pop("tile_size", None) is not None:
        raise ValueError("video-swin3d-b takes img_size (frame side) and frames, not tile_size")
    if unused:
        raise TypeError(f"video-swin3d-b: unexpected arguments {', '.join(unused)}")
    resolved = _resolve_classes(classes, num_classes)
    model = VideoSwin3D(len(resolved), pretrained, drop_path_rate)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.cfg = swin3d_cfg(size=img_size or DEFAULT_SIZE, frames=frames, classes=resolved)
    return model


@register_model(swin3d_cfg())
def video_swin3d_b(**kwargs: Any) -> nn.Module:
    """Video Swin-B on 32 frames x 224 px (torchvision swin3d_b); ensemble member at weight 0.1."""
    return create_swin3d(**kwargs)
