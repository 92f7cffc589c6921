"""Training augmentations for classifiers, as callables on an (H, W, 3) uint8 RGB image.

They plug into `SewerMLDataset(augment=...)`, which then resizes and normalises with the shared
`preprocess`. Each pipeline first resizes the whole frame to the model's input size with the same
OpenCV interpolation as `preprocess` (so augmenting works on 224-px images, not full frames, and
train/eval resizing agree), then applies torchvision v2 ops on a uint8 tensor. All randomness is
torch's, so a seeded run and a resumed run draw the same augmentations.

- `finetune` (DINO-SSL fine-tuning): h-flip, colour jitter, equalize-or-autocontrast, affine
  rotation <= 5 deg, random erasing with scale 0.01-0.05 and ratio 0.1-1.
- `randaugment` (Q2L / MA-Q2L): torchvision RandAugment (2 ops, magnitude 9). The released code's
  cutout is a no-op (inverted rectangle), so it is not reproduced.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from edgesewer.data.preprocess import INTERPOLATIONS
from edgesewer.train.recipe import AugmentSection

Augment = Callable[[np.ndarray], np.ndarray]


class TensorAugment:
    """Resize with OpenCV, run a torchvision v2 pipeline on the CHW uint8 tensor, return HWC uint8."""

    def __init__(self, size: int, pipeline: v2.Transform, interpolation: str = "bilinear"):
        self.size = size
        self.pipeline = pipeline
        self.mode = INTERPOLATIONS[interpolation]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (self.size, self.size):
            image = cv2.resize(np.ascontiguousarray(image), (self.size, self.size), interpolation=self.mode)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        y = self.pipeline(x)
        return np.ascontiguousarray(y.permute(1, 2, 0).numpy())

    def __repr__(self) -> str:
        return f"TensorAugment(size={self.size}, pipeline={self.pipeline})"


def finetune_pipeline(cfg: AugmentSection) -> v2.Transform:
    b, c, s, h = cfg.color_jitter
    ops: list[v2.Transform] = [v2.RandomHorizontalFlip(p=cfg.hflip), v2.ColorJitter(b, c, s, h)]
    if cfg.equalize > 0:
        ops.append(v2.RandomApply([v2.RandomChoice([v2.RandomEqualize(p=1.0), v2.RandomAutocontrast(p=1.0)])],
                                  p=cfg.equalize))
    if cfg.rotation > 0:
        ops.append(v2.RandomAffine(degrees=cfg.rotation))
    if cfg.erasing > 0:
        ops.append(v2.RandomErasing(p=cfg.erasing, scale=tuple(cfg.erasing_scale), ratio=tuple(cfg.erasing_ratio),
                                    value=0))
    return v2.Compose(ops)


def randaugment_pipeline(cfg: AugmentSection) -> v2.Transform:
    return v2.Compose([v2.RandAugment(num_ops=cfg.randaugment_ops, magnitude=cfg.randaugment_magnitude)])


def build_augment(cfg: AugmentSection, size: int, interpolation: str = "bilinear") -> Augment | None:
    """The recipe's augmentation as a dataset `augment` callable (None for `none`)."""
    if cfg.name == "none":
        return None
    builders = {"finetune": finetune_pipeline, "randaugment": randaugment_pipeline}
    if cfg.name not in builders:
        raise ValueError(f"unknown augmentation {cfg.name!r}; valid: none, {', '.join(builders)}")
    return TensorAugment(size, builders[cfg.name](cfg), interpolation)
