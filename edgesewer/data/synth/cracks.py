"""Crack shapes (thin dark zig-zag, branching) and the close-up crack-segmentation patches.

`crack_paths` makes the polylines, `draw_crack` paints them into an image and the exact same
pixels into a mask, so the mask is the crack and nothing else. `render_crack_patch` makes one
DeepCrack-style close-up: a wall patch with cracks at several widths plus distractors that look a
little like cracks but are not (joint grooves, stains, scratches, pits, shadows).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgesewer.data.synth.textures import texture_bank

_SHIFT = 4  # fixed-point bits for sub-pixel polylines
_ONE = 1 << _SHIFT


def crack_paths(rng: np.random.Generator, start: tuple[float, float], heading: float, length: float,
                step: float, wiggle: float = 0.55, branches: int = 2) -> list[np.ndarray]:
    """Zig-zag polylines (float (N, 2) x,y arrays): one trunk of `length` and a few shorter branches."""
    trunk = _walk(rng, np.asarray(start, np.float64), heading, length, step, wiggle)
    paths = [trunk]
    for _ in range(branches):
        if len(trunk) < 4:
            break
        at = trunk[int(rng.integers(1, len(trunk) - 1))]
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1)
        paths.append(_walk(rng, at, heading + turn, length * rng.uniform(0.2, 0.5), step, wiggle))
    return paths


def _walk(rng, start, heading, length, step, wiggle) -> np.ndarray:
    n = max(2, int(length / step))
    # Zig-zag: the turn mostly alternates sign (sometimes not, so it is not a saw tooth),
    # plus a slow drift of the heading.
    sign = np.cumprod(np.where(rng.random(n) < 0.75, -1.0, 1.0))
    turns = rng.uniform(0.2, 1.0, n) * wiggle * sign
    drift = np.cumsum(rng.normal(0.0, 0.12, n))
    angles = heading + turns + drift
    steps = rng.uniform(0.6, 1.4, n)[:, None] * step * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.vstack([start[None, :], start[None, :] + np.cumsum(steps, axis=0)])


def draw_crack(image: np.ndarray, mask: np.ndarray | None, paths: list[np.ndarray], width: float,
               darkness: float = 0.15, halo: float = 0.55) -> None:
    """Paint cracks into `image` (darkened, with a soft darker halo) and into `mask` (255)."""
    for i, path in enumerate(paths):
        w = width if i == 0 else max(1.0, width * 0.6)
        pts = [np.round(path * _ONE).astype(np.int32)]
        halo_w = max(2, int(round(w * 2.5)))
        _darken_polyline(image, pts, halo_w, halo)
        _darken_polyline(image, pts, max(1, int(round(w))), darkness)
        if mask is not None:
            cv2.polylines(mask, pts, False, 255, max(1, int(round(w))), cv2.LINE_8, _SHIFT)


def _darken_polyline(image: np.ndarray, pts: list[np.ndarray], thickness: int, factor: float) -> None:
    """Multiply the pixels under a polyline by `factor` (keeps the wall's own colour and grain)."""
    xy = pts[0] >> _SHIFT
    pad = thickness + 2
    x0, y0 = max(int(xy[:, 0].min()) - pad, 0), max(int(xy[:, 1].min()) - pad, 0)
    x1, y1 = min(int(xy[:, 0].max()) + pad, image.shape[1]), min(int(xy[:, 1].max()) + pad, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0], np.int32) * _ONE
    cv2.polylines(local, [pts[0] - offset], False, 255, thickness, cv2.LINE_AA, _SHIFT)
    alpha = local.astype(np.float32)[..., None] / 255.0
    region = image[y0:y1, x0:x1]
    region[:] = (region * (1.0 - alpha * (1.0 - factor))).astype(np.uint8)


def render_crack_patch(rng: np.random.Generator, size: tuple[int, int] = (256, 256),
                       with_crack: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One close-up wall patch (BGR uint8) and its crack mask (uint8 0/255)."""
    w, h = size
    image = _close_up_wall(rng, w, h)
    mask = np.zeros((h, w), np.uint8)
    _add_distractors(rng, image)
    if with_crack:
        diag = math.hypot(w, h)
        for _ in range(int(rng.integers(1, 3))):
            # Through a point of the central region, so the crack crosses the patch.
            heading = rng.uniform(0, 2 * math.pi)
            length = diag * rng.uniform(0.6, 1.1)
            through = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h])
            start = tuple(through - 0.5 * length * np.array([math.cos(heading), math.sin(heading)]))
            paths = crack_paths(rng, start, heading, length, step=diag * rng.uniform(0.02, 0.05),
                                wiggle=rng.uniform(0.3, 0.8), branches=int(rng.integers(0, 4)))
            width = float(rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], p=[0.2, 0.3, 0.25, 0.15, 0.1])) * w / 256.0
            draw_crack(image, mask, paths, width, darkness=rng.uniform(0.08, 0.3), halo=rng.uniform(0.6, 0.85))
    _light_and_noise(rng, image)
    return image, mask


def _close_up_wall(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    bank = texture_bank(512)
    name = str(rng.choice(["concrete", "old_concrete", "clay", "concrete"]))
    tile = bank.walls[name]
    zoom = rng.uniform(1.0, 2.5)  # close-ups magnify the grain
    cw, ch = int(w / zoom), int(h / zoom)
    y0 = int(rng.integers(0, tile.shape[0] - ch))
    x0 = int(rng.integers(0, tile.shape[1] - cw))
    crop = cv2.resize(tile[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        crop = cv2.rotate(crop, cv2.ROTATE_90_CLOCKWISE) if w == h else crop[:, ::-1]
    gain = rng.uniform(0.8, 1.25) * (1.0 + rng.uniform(-0.08, 0.08, 3)).astype(np.float32)  # exposure, colour cast
    return np.ascontiguousarray(np.clip(crop * gain, 0, 255).astype(np.uint8))


def _add_distractors(rng: np.random.Generator, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    if rng.random() < 0.35:  # a joint groove: straight, wide, with a lit edge
        y = int(rng.uniform(0.15, 0.85) * h)
        tilt = int(rng.uniform(-0.1, 0.1) * h)
        thick = int(rng.uniform(0.02, 0.05) * h) + 2
        cv2.line(image, (0, y), (w, y + tilt), tuple(int(c) for c in image[y, w // 2] * 0.45), thick, cv2.LINE_AA)
        cv2.line(image, (0, y + thick), (w, y + tilt + thick), tuple(int(min(255, c * 1.3)) for c in image[y, w // 2]),
                 max(1, thick // 3), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):  # blurry stains
        stain = np.zeros((h, w), np.float32)
        center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(0.05, 0.25) * w), int(rng.uniform(0.05, 0.2) * h))
        cv2.ellipse(stain, center, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        stain = cv2.GaussianBlur(stain, (0, 0), max(axes) * 0.4 + 1)
        image[:] = (image * (1.0 - rng.uniform(0.2, 0.5) * stain[..., None])).astype(np.uint8)
    for _ in range(int(rng.integers(0, 3))):  # light scratches: thin and straight, brighter than the wall
        p0 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        ang = rng.uniform(0, math.pi)
        ln = rng.uniform(0.1, 0.4) * w
        p1 = (int(p0[0] + ln * math.cos(ang)), int(p0[1] + ln * math.sin(ang)))
        cv2.line(image, p0, p1, tuple(int(min(255, c * 1.35)) for c in image[p0[1] % h, p0[0] % w]), 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 25))):  # pits
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(image, c, int(rng.integers(1, 4)), tuple(int(v * 0.5) for v in image[c[1], c[0]]), -1, cv2.LINE_AA)


def _light_and_noise(rng: np.random.Generator, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - w / 2) * math.cos(ang) + (yy - h / 2) * math.sin(ang)) / max(w, h)
    light = 1.0 + rng.uniform(0.1, 0.6) * ramp
    noise = rng.normal(0.0, rng.uniform(2.0, 6.0), image.shape).astype(np.float32)
    image[:] = np.clip(image * light[..., None] + noise, 0, 255).astype(np.uint8)
