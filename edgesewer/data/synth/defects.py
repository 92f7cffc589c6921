"""Defects painted on the wall itself: RB cracks, OB surface damage, PF lumps, FS displaced joints,
IN infiltration streaks and BE attached deposits.

Each `make_<code>(rng, site)` decides the defect's shape once (so a video shows the same defect in
every frame) and returns a `Defect` whose `paint` draws it into the unrolled wall strip. Lengths
are in pipe radii; `WallCanvas.px` turns them into texels. The side connections live in
`connections.py`, the things that stand out of the wall in `objects.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from edgesewer.data.synth.canvas import ViewCanvas, WallCanvas
from edgesewer.data.synth.cracks import crack_paths, draw_crack
from edgesewer.data.synth.geometry import Deformation, Mound
from edgesewer.data.synth.paint import (
    blend_layer,
    bgr,
    fixed,
    jagged_polygon,
    local_box,
    mean_color,
    poly_alpha,
    scale_layer,
)


@dataclass(frozen=True)
class Site:
    """Where a defect goes: angle round the pipe, absolute position along it, and context."""

    theta: float  # 0 = right, pi/2 = invert (down), pi = left, 3pi/2 = crown (up)
    z: float
    water_depth: float = 0.0


@dataclass
class Defect:
    """One defect instance: how to draw it, and where it is (for placement and in-view tests)."""

    code: str
    theta: float
    z: float
    extent: float  # footprint radius on the wall, in radii
    paint: Callable[[WallCanvas], None] | None = None
    view_op: Callable[[ViewCanvas], None] | None = None
    deformation: Deformation | None = None
    mound: Mound | None = None
    crack: bool = False  # draws into the crack mask
    # Cross-section point (x, y) that must be in the frame for the defect to count as in view;
    # None = the wall point at `theta`. Roots and sealing rings hang inwards from their joint.
    view_point: tuple[float, float] | None = None


def make_rb(rng: np.random.Generator, site: Site) -> Defect:
    """Cracks, breaks: dark zig-zag lines along, across or diagonal to the pipe; sometimes a hole."""
    heading = float(rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4])) + rng.uniform(-0.25, 0.25)
    length = rng.uniform(1.2, 2.2)
    seed = int(rng.integers(0, 2**31))
    width = rng.uniform(0.03, 0.05)
    has_hole = rng.random() < 0.3

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        start = np.array([cu, cv]) - 0.5 * wall.px(length) * np.array([math.cos(heading), math.sin(heading)])
        paths = crack_paths(r, tuple(start), heading, wall.px(length), wall.px(0.07), r.uniform(0.4, 0.8),
                            branches=int(r.integers(1, 4)))
        draw_crack(wall.image, wall.crack_mask, paths, wall.px(width), darkness=0.08, halo=0.4)
        if has_hole:
            hu, hv = paths[0][len(paths[0]) // 2]
            _break_hole(r, wall, hu, hv, wall.px(r.uniform(0.1, 0.2)))

    return Defect("RB", site.theta, site.z, 0.5 * length + 0.1, paint=paint, crack=True)


def _break_hole(rng, wall: WallCanvas, cu: float, cv: float, radius: float) -> None:
    box = local_box(wall.image.shape, cu, cv, 2 * radius, 2 * radius)
    if box is None:
        return
    rim = jagged_polygon(rng, cu, cv, 1.35 * radius, 1.2 * radius, 0.35, n=14)
    hole = jagged_polygon(rng, cu, cv, radius, 0.85 * radius, 0.35, n=14)
    blend_layer(wall.image, box, mean_color(wall.image, box) * 1.5, poly_alpha(box, [rim]) * 0.8)
    blend_layer(wall.image, box, np.array([8, 8, 10], np.float32), poly_alpha(box, [hole]))


def make_ob(rng: np.random.Generator, site: Site) -> Defect:
    """Surface damage: a rough patch where the cement skin is gone and aggregate and pits show."""
    rx, ry = rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.45)
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        pu, pv = wall.px(rx), wall.px(ry)
        box = local_box(wall.image.shape, cu, cv, 1.4 * pu, 1.4 * pv)
        if box is None:
            return
        outline = jagged_polygon(r, cu, cv, pu, pv, 0.3, n=22, angle=r.uniform(0, math.pi))
        inside = poly_alpha(box, [outline], blur=1.0)
        scale_layer(wall.image, box, 1.0 - 0.6 * inside)  # exposed, darker core
        n_stones = int(110 * rx * ry / 0.04)
        for _ in range(n_stones):
            su, sv = cu + r.normal(0, 0.45) * pu, cv + r.normal(0, 0.45) * pv
            in_box = box[0] <= su < box[2] and box[1] <= sv < box[3]
            if not in_box or inside[int(sv) - box[1], int(su) - box[0]] < 0.5:
                continue
            stone = r.uniform(150, 235) * np.array([0.92, 1.0, 1.06])  # grey-beige aggregate
            axes = (max(1, int(wall.px(r.uniform(0.015, 0.04)))), max(1, int(wall.px(r.uniform(0.012, 0.035)))))
            cv2.ellipse(wall.image, (int(su), int(sv)), axes, r.uniform(0, 180), 0, 360, bgr(stone), -1, cv2.LINE_AA)
        for _ in range(n_stones // 3):
            su, sv = cu + r.normal(0, 0.4) * pu, cv + r.normal(0, 0.4) * pv
            cv2.circle(wall.image, (int(su), int(sv)), max(1, int(wall.px(r.uniform(0.008, 0.025)))), (12, 12, 14),
                       -1, cv2.LINE_AA)

    return Defect("OB", site.theta, site.z, max(rx, ry), paint=paint)


def make_pf(rng: np.random.Generator, site: Site) -> Defect:
    """Production error: a lump of excess pipe material, lit on the side facing the lamp."""
    rx, ry = rng.uniform(0.28, 0.45), rng.uniform(0.22, 0.36)
    seed = int(rng.integers(0, 2**31))
    lighter = rng.uniform(1.35, 1.7)

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        pu, pv = wall.px(rx), wall.px(ry)
        box = local_box(wall.image.shape, cu, cv, 1.6 * pu, 1.8 * pv)
        if box is None:
            return
        outline = jagged_polygon(r, cu, cv, pu, pv, 0.18, n=16)
        inside = poly_alpha(box, [outline], blur=1.0)
        yy = (np.arange(box[1], box[3], dtype=np.float32)[:, None] - cv) / pv
        xx = (np.arange(box[0], box[2], dtype=np.float32)[None, :] - cu) / pu
        # Dome shading: the near side (smaller v) faces the lamp and glares; the far half is in shadow.
        dome = np.sqrt(np.clip(1.0 - xx * xx - yy * yy, 0.0, 1.0))
        shade = lighter * (0.75 + 0.6 * dome) * np.where(yy > 0.2, 1.0 - 0.75 * np.clip(yy - 0.2, 0, 1), 1.0)
        factor = 1.0 + inside * (shade - 1.0)
        shadow = jagged_polygon(r, cu, cv + 0.35 * pv, 1.05 * pu, 0.85 * pv, 0.15, n=16)  # cast behind the lump
        factor *= 1.0 - 0.7 * np.clip(poly_alpha(box, [shadow], blur=1.5) - inside, 0, 1)
        scale_layer(wall.image, box, np.clip(factor, 0.15, 2.5))

    return Defect("PF", site.theta, site.z, max(rx, ry), paint=paint)


def make_fs(rng: np.random.Generator, site: Site) -> Defect:
    """Displaced joint: the next pipe sits off-centre, leaving a dark crescent gap at the joint."""
    gap = rng.uniform(0.12, 0.22)
    offset_dir = float(site.theta)

    def paint(wall: WallCanvas) -> None:
        v0 = wall.v(site.z)
        u = np.arange(0, wall.width + 1, 2, dtype=np.float32)
        theta = u / wall.width * 2 * math.pi + math.pi / 2
        c = np.cos(theta - offset_dir)
        thick = wall.px(gap) * np.clip(c, 0, None) ** 1.3 + 1.5
        inner = np.stack([u, np.full_like(u, v0)], axis=1)
        outer = np.stack([u, v0 + thick], axis=1)
        cv2.fillPoly(wall.image, [fixed(np.vstack([inner, outer[::-1]]))], (10, 10, 12), cv2.LINE_AA, 4)
        lip = outer + [0.0, 1.5]
        lip_color = bgr(mean_color(wall.image, (0, int(v0) + 6, wall.width, int(v0) + 12)) * 1.7)
        cv2.polylines(wall.image, [fixed(lip)], False, lip_color, max(2, int(wall.px(0.03))), cv2.LINE_AA, 4)
        # The opposite side steps the other way: a lit edge instead of a gap.
        step = np.stack([u, v0 - wall.px(0.04) * np.clip(-c, 0, None) ** 1.3], axis=1)
        cv2.polylines(wall.image, [fixed(step)], False, lip_color, max(1, int(wall.px(0.02))), cv2.LINE_AA, 4)

    return Defect("FS", site.theta, site.z, 0.3, paint=paint)


def make_in(rng: np.random.Generator, site: Site) -> Defect:
    """Infiltration: water running down the wall from a joint - dark wet streaks with glossy cores."""
    n = int(rng.integers(3, 7))
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        # Columns 0 and width are the invert: run towards whichever is nearer.
        target = 0.0 if cu < wall.width / 2 else float(wall.width)
        wet = np.array([0.42, 0.48, 0.5], np.float32)
        box = local_box(wall.image.shape, cu, cv, wall.px(0.3), wall.px(0.25))
        if box is not None:
            blob = jagged_polygon(r, cu, cv, wall.px(0.22), wall.px(0.15), 0.3)
            scale_layer(wall.image, box, 1.0 - 0.4 * poly_alpha(box, [blob], blur=3.0))
        for _ in range(n):
            u = np.linspace(cu + r.uniform(-0.1, 0.1) * wall.px(1), target, 40)
            drift = np.cumsum(r.normal(0, 0.6, 40)) + r.uniform(-0.12, 0.12) * wall.px(1)
            v = cv + drift + wall.px(0.03) * np.sin(np.linspace(0, r.uniform(3, 9), 40))
            path = np.stack([u, v], axis=1)
            width = max(2, int(wall.px(r.uniform(0.06, 0.11))))
            _multiply_polyline(wall.image, path, width, wet)
            gloss = bgr(np.array([225, 232, 228]) * r.uniform(0.85, 1.0))
            cv2.polylines(wall.image, [fixed(path)], False, gloss, max(1, width // 3), cv2.LINE_AA, 4)
            for d in r.choice(len(path), size=3, replace=False):  # drops
                cv2.ellipse(wall.image, (int(path[d, 0]), int(path[d, 1])), (max(1, width // 2), max(1, width // 3)),
                            0, 0, 360, gloss, -1, cv2.LINE_AA)

    return Defect("IN", site.theta, site.z, 0.3, paint=paint)


def _multiply_polyline(image: np.ndarray, path: np.ndarray, width: int, factor: np.ndarray) -> None:
    lo, hi = path.min(axis=0) - width - 2, path.max(axis=0) + width + 2
    box = local_box(image.shape, (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (hi[0] - lo[0]) / 2, (hi[1] - lo[1]) / 2)
    if box is None:
        return
    layer = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    cv2.polylines(layer, [fixed(path - [box[0], box[1]])], False, 255, width, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), 1.0)[..., None]
    scale_layer(image, box, 1.0 - alpha * (1.0 - factor))


def make_be(rng: np.random.Generator, site: Site) -> Defect:
    """Attached deposits: grease or encrustation blobs stuck to the upper wall."""
    spread = rng.uniform(0.3, 0.5)
    grease = rng.random() < 0.6
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        base = np.array([150, 215, 240], np.float32) if grease else np.array([185, 195, 200], np.float32)
        for _ in range(int(r.integers(9, 19))):
            bu, bv = cu + r.normal(0, 0.5) * wall.px(spread), cv + r.normal(0, 0.5) * wall.px(spread)
            radius = wall.px(r.uniform(0.09, 0.24))
            box = local_box(wall.image.shape, bu, bv, 1.6 * radius, 1.6 * radius)
            if box is None:
                continue
            blob = jagged_polygon(r, bu, bv, radius, radius * r.uniform(0.5, 0.9), 0.3, angle=r.uniform(0, math.pi))
            color = base * r.uniform(0.8, 1.1, 3)
            blend_layer(wall.image, box, color * 0.4, poly_alpha(box, [blob], blur=1.2))  # dark rim
            inner = jagged_polygon(r, bu, bv - 0.15 * radius, 0.8 * radius, 0.6 * radius, 0.2)
            blend_layer(wall.image, box, color, poly_alpha(box, [inner], blur=1.0) * 0.9)
            cv2.circle(wall.image, (int(bu), int(bv - 0.3 * radius)), max(1, int(radius * 0.15)),
                       bgr(np.minimum(color * 1.4, 255)), -1, cv2.LINE_AA)

    return Defect("BE", site.theta, site.z, spread, paint=paint)
