"""The plain pipe wall before any defect: material, joints, and harmless marks.

The harmless marks (stains, the wet band along the invert, the high-water line, joints) appear on
normal and defective pipes alike, so a classifier cannot use "any dark mark" as a defect cue.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgesewer.data.synth.canvas import TWO_PI, WallCanvas
from edgesewer.data.synth.paint import bgr, jagged_polygon, local_box, poly_alpha, scale_layer
from edgesewer.data.synth.textures import MATERIAL_WEIGHTS, texture_bank, wall_strip


def pick_material(rng: np.random.Generator, lined: bool = False) -> str:
    """A pipe material by `MATERIAL_WEIGHTS`; `lined` forces the liner (reinstatement cuts need one).

    Draws from `rng` the same way either way, so forcing the liner changes nothing else in the scene.
    """
    names = list(MATERIAL_WEIGHTS)
    weights = np.array([MATERIAL_WEIGHTS[n] for n in names])
    drawn = str(rng.choice(names, p=weights / weights.sum()))
    return "liner" if lined else drawn


def build_wall(rng: np.random.Generator, width: int, material: str, length: float, origin: float,
               joints: np.ndarray, track_cracks: bool, marked_length: float | None = None) -> WallCanvas:
    """An unrolled wall covering pipe positions [origin, origin + length] (radii) with joints and marks.

    Stains go on the first `marked_length` radii only (default: all); a still frame cannot see
    them further away than ~7 radii anyway.
    """
    bank = texture_bank(width)
    ppu = width / TWO_PI
    rows = int(math.ceil(length * ppu)) + 2
    strip = wall_strip(bank, material, rows, rng)
    mask = np.zeros(strip.shape[:2], np.uint8) if track_cracks else None
    wall = WallCanvas(strip, mask, ppu, origin, material)
    _wet_band(rng, wall)
    marked = length if marked_length is None else min(marked_length, length)
    for _ in range(int(rng.poisson(0.3 * marked)) + 1):
        _stain(rng, wall, marked)
    groove = rng.uniform(0.015, 0.03)
    for z in joints:
        draw_joint(wall, float(z), groove)
    return wall


def draw_joint(wall: WallCanvas, z: float, groove: float) -> None:
    """A normal joint: a thin, even groove right round the pipe with a lit far edge."""
    v = wall.v(z)
    if not (0 <= v < wall.image.shape[0] - 2):
        return
    row = wall.image[int(v)]
    dark = bgr(row.mean(axis=0) * 0.35)
    light = bgr(np.minimum(row.mean(axis=0) * 1.35, 255))
    thick = max(1, int(round(wall.px(groove))))
    cv2.line(wall.image, (0, int(v)), (wall.width, int(v)), dark, thick, cv2.LINE_AA)
    cv2.line(wall.image, (0, int(v) + thick), (wall.width, int(v) + thick), light, 1, cv2.LINE_AA)


def _wet_band(rng: np.random.Generator, wall: WallCanvas) -> None:
    """Darker, browner wall along the invert where sewage runs; sometimes a high-water line."""
    u = np.arange(wall.width, dtype=np.float32)
    from_invert = np.minimum(u, wall.width - u) / wall.width  # 0 at the invert, 0.5 at the crown
    sigma = rng.uniform(0.08, 0.18)
    depth = rng.uniform(0.15, 0.45)
    gain = 1.0 - depth * np.exp(-((from_invert / sigma) ** 2))
    wall.column_gain = np.stack([gain * 0.9, gain * 0.97, gain], axis=1).astype(np.float32)  # browner where wet
    if rng.random() < 0.5:
        mark = rng.uniform(0.12, 0.25) * wall.width
        for col in (mark, wall.width - mark):
            cv2.line(wall.image, (int(col), 0), (int(col), wall.image.shape[0]),
                     bgr(wall.image[:, int(col)].mean(axis=0) * 0.7), max(1, int(wall.px(0.02))))


def _stain(rng: np.random.Generator, wall: WallCanvas, span: float) -> None:
    cu = rng.uniform(0.1, 0.9) * wall.width
    cv = rng.uniform(0, wall.px(span))
    rx, ry = wall.px(rng.uniform(0.1, 0.45)), wall.px(rng.uniform(0.1, 0.35))
    box = local_box(wall.image.shape, cu, cv, 1.5 * rx, 1.5 * ry)
    if box is None:
        return
    blob = jagged_polygon(rng, cu, cv, rx, ry, 0.3, angle=rng.uniform(0, math.pi))
    alpha = poly_alpha(box, [blob], blur=0.3 * min(rx, ry) + 1)
    tint = np.array([0.8, 0.9, 0.85], np.float32) if rng.random() < 0.3 else np.full(3, 0.75, np.float32)
    strength = rng.uniform(0.3, 0.8)
    scale_layer(wall.image, box, 1.0 - strength * alpha[..., None] * (1.0 - tint))
