"""The 4-channel crack input: RGB scaled to [-1, 1] plus a binary edge map (numpy + OpenCV only).

SCNet's paper fed HED edges as the fourth channel; HED weights are not available offline, so the
edge map comes from a classical OpenCV detector, chosen by name. Training, evaluation and the
torch-free runtime all build the input through `crack_input`, so they agree to the pixel.

Add a detector with `EDGE_DETECTORS["name"] = fn` where fn(gray uint8 HxW) -> bool HxW.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

EdgeDetector = Callable[[np.ndarray], np.ndarray]


def canny_edges(gray: np.ndarray) -> np.ndarray:
    """Canny with thresholds set from the image median (0.66x and 1.33x), after a 3x3 Gaussian blur.

    Median-relative thresholds keep the detector usable across dark sewer footage and bright
    pavement photos without per-dataset tuning.
    """
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    median = float(np.median(blurred))
    low, high = max(0.0, 0.66 * median), min(255.0, 1.33 * median)
    high = max(high, low + 1.0)  # an all-black image still gets a valid (empty) result
    return cv2.Canny(blurred, low, high, L2gradient=True) > 0


def sobel_edges(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude binarised with Otsu's threshold."""
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.magnitude(gx, gy)
    peak = float(magnitude.max())
    if peak <= 0:
        return np.zeros(gray.shape, dtype=bool)
    scaled = np.round(magnitude * (255.0 / peak)).astype(np.uint8)
    _, binary = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return binary > 0


_BLACKHAT_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))


def blackhat_edges(gray: np.ndarray) -> np.ndarray:
    """Thin dark lines: morphological black-hat (11-px disc) above its mean + 3 standard deviations.

    Canny marks both borders of a crack and the texture around it; the black-hat (closing minus image)
    responds to the dark line itself. As a crack cue on CrackForest's training images, pixel F1 against
    the ground truth: Canny 0.17, this 0.38 on whole images and 0.39 on 128-px crops (the statistic is
    per image, so a crop and the whole image give similar maps).
    """
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    response = cv2.morphologyEx(blurred, cv2.MORPH_BLACKHAT, _BLACKHAT_KERNEL).astype(np.float32)
    return response > float(response.mean()) + 3.0 * float(response.std())


def no_edges(gray: np.ndarray) -> np.ndarray:
    """All-zero edge channel (ablation: RGB only, keeping the 4-channel model)."""
    return np.zeros(gray.shape, dtype=bool)


EDGE_DETECTORS: dict[str, EdgeDetector] = {"canny": canny_edges, "sobel": sobel_edges, "blackhat": blackhat_edges,
                                           "none": no_edges}


def get_edge_detector(name: str) -> EdgeDetector:
    try:
        return EDGE_DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown edge detector {name!r}; choose from {', '.join(EDGE_DETECTORS)}") from None


def crack_input(rgb: np.ndarray, size: int | tuple[int, int] | None = None, edge: str = "canny") -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 4xHxW: channels 0-2 = RGB/127.5 - 1, channel 3 = edge map in {0, 1}.

    Args:
        rgb: image in RGB order (not OpenCV's BGR), uint8.
        size: resize first to size x size, or to (width, height); None keeps the image size.
        edge: name of a detector in `EDGE_DETECTORS`.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"crack_input needs an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if size is not None:
        width, height = (size, size) if isinstance(size, int) else size
        if (width, height) != (rgb.shape[1], rgb.shape[0]):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    edges = get_edge_detector(edge)(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    out = np.empty((4, rgb.shape[0], rgb.shape[1]), dtype=np.float32)
    out[:3] = rgb.transpose(2, 0, 1)
    out[:3] *= 1.0 / 127.5
    out[:3] -= 1.0
    out[3] = edges
    return out


def crack_input_batch(
    images: list[np.ndarray], size: int | tuple[int, int] | None = None, edge: str = "canny"
) -> np.ndarray:
    """Stack `crack_input` of several RGB images -> float32 Nx4xHxW (all must end up the same size)."""
    return np.stack([crack_input(image, size=size, edge=edge) for image in images])
