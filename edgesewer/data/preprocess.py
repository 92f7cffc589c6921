"""Image -> network input, the one implementation shared by training, export calibration
and the torch-free runtime (numpy + OpenCV only), so that all three see identical tensors."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def preprocess(
    images: np.ndarray | Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Resize RGB uint8 images to size x size (whole image, no crop), scale to [0, 1] and normalise.

    Args:
        images: one (H, W, 3) image, an (N, H, W, 3) batch, or a list of (H, W, 3) images of
            any sizes; RGB channel order, uint8.
        size: output side in pixels.
        mean, std: per-channel statistics in [0, 1] units (e.g. `ModelCfg.mean`).
        interpolation: one of `INTERPOLATIONS` (OpenCV resize modes; "bilinear" is
            cv2.INTER_LINEAR, which does not antialias when shrinking; "area" does).

    Returns:
        float32 array of shape (N, 3, size, size), C-contiguous.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose from {', '.join(INTERPOLATIONS)}")
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    mode = INTERPOLATIONS[interpolation]
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if image.shape[:2] == (size, size):
            batch[i] = image
        else:
            # Augmentations may hand over strided views (flips); OpenCV wants contiguous memory.
            batch[i] = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=mode)
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    # (x / 255 - mean) / std folded into one multiply-add.
    scale = 1.0 / (255.0 * std_arr)
    offset = mean_arr / std_arr
    out = batch.astype(np.float32) * scale - offset
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
