"""Small drawing helpers shared by the defect painters (all OpenCV primitives, no pixel loops)."""

from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4  # fixed-point bits for sub-texel polygons
ONE = 1 << SHIFT


def jagged_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float,
                   irregularity: float, n: int = 18, angle: float = 0.0) -> np.ndarray:
    """A closed blob outline as fixed-point int32 points (use with `shift=SHIFT`)."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 2 * math.pi / n)
    radius = 1.0 + irregularity * rng.uniform(-1.0, 1.0, n)
    radius = 0.5 * (radius + np.roll(radius, 1))  # soften single spikes
    x, y = rx * radius * np.cos(t), ry * radius * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    pts = np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)
    return np.round(pts * ONE).astype(np.int32)


def fixed(points: np.ndarray) -> np.ndarray:
    """Float (N, 2) points to fixed-point int32 for cv2 drawing with `shift=SHIFT`."""
    return np.round(np.asarray(points) * ONE).astype(np.int32)


def local_box(shape: tuple[int, ...], cx: float, cy: float, half_w: float, half_h: float):
    """Clipped integer box (x0, y0, x1, y1) around a centre, or None when outside the image."""
    x0, y0 = max(int(cx - half_w), 0), max(int(cy - half_h), 0)
    x1, y1 = min(int(cx + half_w) + 1, shape[1]), min(int(cy + half_h) + 1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def blend_layer(image: np.ndarray, box, color: np.ndarray, alpha: np.ndarray) -> None:
    """image[box] = image * (1 - alpha) + color * alpha, with alpha (h, w) in [0, 1]."""
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    image[y0:y1, x0:x1] = np.clip(region * (1.0 - a) + color * a, 0, 255).astype(np.uint8)


def scale_layer(image: np.ndarray, box, factor: np.ndarray) -> None:
    """image[box] *= factor (h, w) or (h, w, 3): shading that keeps the wall's own grain."""
    x0, y0, x1, y1 = box
    f = factor if factor.ndim == 3 else factor[..., None]
    image[y0:y1, x0:x1] = np.clip(image[y0:y1, x0:x1].astype(np.float32) * f, 0, 255).astype(np.uint8)


def poly_alpha(box, polygons: list[np.ndarray], blur: float = 0.0) -> np.ndarray:
    """A float (h, w) coverage mask of fixed-point polygons, inside the box, optionally feathered."""
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0], np.int32) * ONE
    cv2.fillPoly(mask, [p - offset for p in polygons], 255, cv2.LINE_AA, SHIFT)
    alpha = mask.astype(np.float32) / 255.0
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return alpha


def mean_color(image: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0).astype(np.float32)


def bgr(color) -> tuple[int, int, int]:
    """A colour as the int tuple OpenCV drawing functions want, clipped to 0..255."""
    return tuple(int(min(255.0, max(0.0, float(c)))) for c in color[:3])  # type: ignore[return-value]
