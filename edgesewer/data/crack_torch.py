"""Torch datasets for crack segmentation: (4-channel input, mask) tensors with SCNet's augmentation.

Training (the paper's recipe): rotation by a uniform angle in [0, 90] degrees, horizontal and
vertical flips (each with probability 0.5), a random crop of `crop` pixels (reflect-padded first
when the image is smaller), then the edge channel is computed on the final crop, exactly as the
runtime computes it on a frame. Validation: the whole image, resized to `size` ("resize"),
reflect-padded to a multiple of 32 with the padding marked -1 in the target ("pad", batch 1), or
as it is ("full", batch 1) for tiled scoring, the protocol of `edgesewer.metrics.crack_eval`.

Each item is (inputs float32 [4,H,W], target float32 [1,H,W] with 1 = crack, 0 = background,
-1 = padding to ignore).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgesewer.data.crack import CrackFolder
from edgesewer.data.edges import crack_input

IGNORE = -1.0


def rotate_pair(rgb: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate image (bilinear) and mask (nearest) about the centre, same size, reflected borders."""
    height, width = mask.shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    rgb = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask_u8 = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_REFLECT_101)
    return rgb, mask_u8.astype(bool)


def pad_to_at_least(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad at the bottom/right so the image is at least height x width."""
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image
    return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)


def jitter_photometric(rgb: np.ndarray, rng: np.random.Generator, brightness: float = 0.0, contrast: float = 0.0,
                       saturation: float = 0.0) -> np.ndarray:
    """Scale brightness, contrast (about the mean grey) and saturation by factors uniform in [1 - s, 1 + s].

    Applied to the RGB crop only: the mask is untouched, and the edge channel is computed afterwards from the
    jittered crop, as the runtime computes it from whatever light the camera gives."""
    if brightness <= 0 and contrast <= 0 and saturation <= 0:
        return rgb
    image = rgb.astype(np.float32)
    if brightness > 0:
        image *= rng.uniform(1.0 - brightness, 1.0 + brightness)
    grey = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if contrast > 0:
        mean = float(grey.mean())
        factor = rng.uniform(1.0 - contrast, 1.0 + contrast)
        image = (image - mean) * factor + mean
        grey = (grey - mean) * factor + mean
    if saturation > 0:
        image = grey[..., None] + (image - grey[..., None]) * rng.uniform(1.0 - saturation, 1.0 + saturation)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def augment_pair(rgb: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator,
                 max_rotation: float = 90.0, hflip: float = 0.5, vflip: float = 0.5,
                 right_angles: bool = False, jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
                 ) -> tuple[np.ndarray, np.ndarray]:
    """SCNet training augmentation: rotate [0, max_rotation] deg, h/v flips (probabilities), random crop x crop.

    `right_angles` also turns the pair by k x 90 degrees (k uniform in 0..3): a lossless rotation that keeps
    the image sharp and a 1-px crack mask on its pixels, where an arbitrary angle resamples both.
    `jitter` = (brightness, contrast, saturation) strengths for `jitter_photometric` on the final crop."""
    if right_angles:
        turns = int(rng.integers(0, 4))
        rgb, mask = np.ascontiguousarray(np.rot90(rgb, turns)), np.ascontiguousarray(np.rot90(mask, turns))
    if max_rotation > 0:
        rgb, mask = rotate_pair(rgb, mask, float(rng.uniform(0.0, max_rotation)))
    if rng.random() < hflip:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    if rng.random() < vflip:
        rgb, mask = rgb[::-1], mask[::-1]
    rgb = pad_to_at_least(np.ascontiguousarray(rgb), crop, crop)
    mask = pad_to_at_least(np.ascontiguousarray(mask).astype(np.uint8), crop, crop).astype(bool)
    top = int(rng.integers(0, mask.shape[0] - crop + 1))
    left = int(rng.integers(0, mask.shape[1] - crop + 1))
    window = (slice(top, top + crop), slice(left, left + crop))
    rgb = jitter_photometric(np.ascontiguousarray(rgb[window]), rng, *jitter)
    return rgb, np.ascontiguousarray(mask[window])


class CrackTrainDataset(Dataset):
    """Augmented random crops; `repeats` visits each image several times per epoch (small datasets)."""

    def __init__(self, folder: CrackFolder, crop: int = 256, edge: str = "canny", max_rotation: float = 90.0,
                 hflip: float = 0.5, vflip: float = 0.5, repeats: int = 1, right_angles: bool = False,
                 jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        if crop % 32:
            raise ValueError(f"crop must be a multiple of 32 for SCNet, got {crop}")
        self.folder, self.crop, self.edge = folder, crop, edge
        self.max_rotation, self.hflip, self.vflip, self.repeats = max_rotation, hflip, vflip, repeats
        self.right_angles, self.jitter = right_angles, tuple(jitter)

    def __len__(self) -> int:
        return len(self.folder) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, mask = self.folder[index % len(self.folder)]
        # Seeded from torch's generator, which DataLoader seeds differently in each worker and epoch.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        rgb, mask = augment_pair(rgb, mask, self.crop, rng, self.max_rotation, self.hflip, self.vflip,
                                 self.right_angles, self.jitter)
        inputs = crack_input(rgb, edge=self.edge)
        return torch.from_numpy(inputs), torch.from_numpy(mask[None].astype(np.float32))


class CrackEvalDataset(Dataset):
    """Whole images for validation: mode "resize" (to size x size), "pad" (to a multiple of 32, batch 1) or
    "full" (native size, batch 1)."""

    def __init__(self, folder: CrackFolder, size: int = 256, mode: str = "resize", edge: str = "canny") -> None:
        if mode not in ("resize", "pad", "full"):
            raise ValueError(f"mode must be 'resize', 'pad' or 'full', got {mode!r}")
        self.folder, self.size, self.mode, self.edge = folder, size, mode, edge

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, mask = self.folder[index]
        if self.mode == "resize":
            target = cv2.resize(mask.astype(np.uint8), (self.size, self.size), interpolation=cv2.INTER_NEAREST)
            inputs = crack_input(rgb, size=self.size, edge=self.edge)
            return torch.from_numpy(inputs), torch.from_numpy(target[None].astype(np.float32))
        if self.mode == "full":
            return torch.from_numpy(crack_input(rgb, edge=self.edge)), torch.from_numpy(mask[None].astype(np.float32))
        height, width = mask.shape
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        inputs = crack_input(pad_to_at_least(rgb, padded_h, padded_w), edge=self.edge)
        target = np.full((1, padded_h, padded_w), IGNORE, dtype=np.float32)
        target[0, :height, :width] = mask
        return torch.from_numpy(inputs), torch.from_numpy(target)
