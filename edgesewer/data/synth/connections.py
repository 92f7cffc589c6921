"""Side connections: six kinds of opening in the wall, each with its own tell-tale edge.

GR branch pipe (large, clean, the branch's own wall visible inside), PH chiseled (ragged hole with
broken rim), PB drilled (small, perfectly round, crisp rim), OS reinstatement cut (a hole cut
through a liner: bright cut edge, the old pipe showing in a ring), OP transition profile (stepped
conical collar), OK construction change (a lateral of another material: orange PVC or red brick).
Inside every opening the far inner wall of the lateral catches the lamp and the rest is dark.
"""

from __future__ import annotations

import math

import numpy as np

from edgesewer.data.synth.canvas import WallCanvas
from edgesewer.data.synth.defects import Defect, Site
from edgesewer.data.synth.paint import blend_layer, jagged_polygon, local_box, mean_color, poly_alpha, scale_layer

_BLACK = np.array([8, 8, 10], np.float32)
_PVC = np.array([40, 120, 225], np.float32)
_BRICK = np.array([45, 60, 160], np.float32)


def _opening(rng, wall: WallCanvas, cu, cv, radius, inner_color, irregular=0.0, ring_dark=0.6) -> None:
    """A lateral's mouth: its inner wall (lit on the far side) around a dark core."""
    box = local_box(wall.image.shape, cu, cv, 1.3 * radius + 2, 1.3 * radius + 2)
    if box is None:
        return
    mouth = jagged_polygon(rng, cu, cv, radius, radius, irregular, n=24)
    blend_layer(wall.image, box, inner_color * ring_dark, poly_alpha(box, [mouth], blur=0.6))
    # The core sits towards the camera (smaller v): from there the lateral's far wall is visible.
    core = jagged_polygon(rng, cu, cv - 0.18 * radius, 0.72 * radius, 0.66 * radius, irregular * 0.5, n=24)
    blend_layer(wall.image, box, _BLACK, poly_alpha(box, [core], blur=1.2))


def _ring(wall: WallCanvas, cu, cv, radius, width, color, alpha=1.0, irregular=0.0, rng=None) -> None:
    box = local_box(wall.image.shape, cu, cv, radius + width + 2, radius + width + 2)
    if box is None:
        return
    r = rng or np.random.default_rng(0)
    outer = jagged_polygon(r, cu, cv, radius + width / 2, radius + width / 2, irregular, n=28)
    inner = jagged_polygon(r, cu, cv, radius - width / 2, radius - width / 2, irregular, n=28)
    ring = np.clip(poly_alpha(box, [outer]) - poly_alpha(box, [inner]), 0, 1)
    blend_layer(wall.image, box, np.asarray(color, np.float32), ring * alpha)


def make_gr(rng: np.random.Generator, site: Site) -> Defect:
    """Branch pipe: a large clean opening with the socket ring of the branch around it."""
    radius = rng.uniform(0.38, 0.55)
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        box = local_box(wall.image.shape, cu, cv, rp, rp)
        if box is None:
            return
        wall_color = mean_color(wall.image, box)
        _ring(wall, cu, cv, rp * 1.12, max(2, rp * 0.06), wall_color * 0.45)
        _opening(r, wall, cu, cv, rp, wall_color, ring_dark=0.85)

    return Defect("GR", site.theta, site.z, radius * 1.15, paint=paint)


def make_ph(rng: np.random.Generator, site: Site) -> Defect:
    """Chiseled connection: a ragged hole knocked through the wall, broken lighter rim and chips."""
    radius = rng.uniform(0.25, 0.4)
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        box = local_box(wall.image.shape, cu, cv, 1.6 * rp, 1.6 * rp)
        if box is None:
            return
        wall_color = mean_color(wall.image, box)
        rim = jagged_polygon(r, cu, cv, 1.35 * rp, 1.3 * rp, 0.3, n=20)
        blend_layer(wall.image, box, wall_color * 1.45, poly_alpha(box, [rim], blur=0.8) * 0.85)
        for _ in range(int(r.integers(8, 16))):  # broken chips on the rim
            a = r.uniform(0, 2 * math.pi)
            du, dv = math.cos(a) * rp * r.uniform(1.0, 1.45), math.sin(a) * rp * r.uniform(1.0, 1.45)
            chip = jagged_polygon(r, cu + du, cv + dv, rp * 0.12, rp * 0.09, 0.5, n=6, angle=a)
            blend_layer(wall.image, box, wall_color * r.choice([0.4, 1.7]), poly_alpha(box, [chip]))
        _opening(r, wall, cu, cv, rp, wall_color * 0.8, irregular=0.35, ring_dark=0.5)

    return Defect("PH", site.theta, site.z, radius * 1.4, paint=paint)


def make_pb(rng: np.random.Generator, site: Site) -> Defect:
    """Drilled connection: a small, perfectly round hole with a crisp bright cut rim."""
    radius = rng.uniform(0.13, 0.2)

    def paint(wall: WallCanvas) -> None:
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        box = local_box(wall.image.shape, cu, cv, 1.5 * rp, 1.5 * rp)
        if box is None:
            return
        wall_color = mean_color(wall.image, box)
        _ring(wall, cu, cv, rp * 1.08, max(2.0, rp * 0.16), np.minimum(wall_color * 1.8, 255))
        hole = jagged_polygon(np.random.default_rng(0), cu, cv, rp, rp, 0.0, n=32)
        blend_layer(wall.image, box, _BLACK, poly_alpha(box, [hole]))

    return Defect("PB", site.theta, site.z, radius * 1.3, paint=paint)


def make_os(rng: np.random.Generator, site: Site) -> Defect:
    """Lateral reinstatement cut: a hole cut out of a liner, bright ragged cut edge, old pipe inside."""
    radius = rng.uniform(0.26, 0.4)
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        box = local_box(wall.image.shape, cu, cv, 1.4 * rp, 1.4 * rp)
        if box is None:
            return
        cut = jagged_polygon(r, cu, cv, 1.22 * rp, 1.18 * rp, 0.1, n=30)
        blend_layer(wall.image, box, np.array([235, 240, 240], np.float32), poly_alpha(box, [cut], blur=0.5))
        host = jagged_polygon(r, cu, cv, 1.1 * rp, 1.08 * rp, 0.06, n=30)  # old pipe between liner and hole
        blend_layer(wall.image, box, np.array([80, 100, 120], np.float32), poly_alpha(box, [host], blur=0.5))
        _opening(r, wall, cu, cv, rp * 0.92, np.array([90, 105, 120], np.float32), ring_dark=0.6)
        for _ in range(int(r.integers(2, 5))):  # resin flaps left by the cutter
            a = r.uniform(0, 2 * math.pi)
            flap = jagged_polygon(r, cu + 1.2 * rp * math.cos(a), cv + 1.2 * rp * math.sin(a),
                                  0.18 * rp, 0.08 * rp, 0.3, n=6, angle=a + math.pi / 2)
            blend_layer(wall.image, box, np.array([200, 225, 235], np.float32), poly_alpha(box, [flap]))

    return Defect("OS", site.theta, site.z, radius * 1.3, paint=paint)


def make_op(rng: np.random.Generator, site: Site) -> Defect:
    """Connection with transition profile: a stepped, conical collar narrowing into the lateral."""
    radius = rng.uniform(0.32, 0.46)
    steps = int(rng.integers(2, 4))

    def paint(wall: WallCanvas) -> None:
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        box = local_box(wall.image.shape, cu, cv, 1.3 * rp, 1.3 * rp)
        if box is None:
            return
        wall_color = mean_color(wall.image, box)
        rng0 = np.random.default_rng(0)
        for k in range(steps + 1):
            rk = rp * (1.0 - 0.55 * k / steps)
            shift = -0.22 * rp * k / steps  # each step further in, seen towards the camera side
            tone = (1.45 if k % 2 == 0 else 0.75) * (1.0 - 0.15 * k)
            disc = jagged_polygon(rng0, cu, cv + shift, rk, rk, 0.0, n=32)
            edge = jagged_polygon(rng0, cu, cv + shift, rk + 1.5, rk + 1.5, 0.0, n=32)
            blend_layer(wall.image, box, wall_color * 0.3, poly_alpha(box, [edge]))
            blend_layer(wall.image, box, np.minimum(wall_color * tone, 255), poly_alpha(box, [disc]))
        core = jagged_polygon(rng0, cu, cv - 0.3 * rp, 0.36 * rp, 0.34 * rp, 0.0, n=24)
        blend_layer(wall.image, box, _BLACK, poly_alpha(box, [core], blur=1.0))

    return Defect("OP", site.theta, site.z, radius * 1.1, paint=paint)


def make_ok(rng: np.random.Generator, site: Site) -> Defect:
    """Connection with construction changes: a lateral of another material (orange PVC, red brick),
    often with a change-of-material band round the main pipe next to it."""
    radius = rng.uniform(0.3, 0.45)
    color = (_PVC if rng.random() < 0.65 else _BRICK) * rng.uniform(0.85, 1.1, 3)
    band = rng.random() < 0.4
    band_len = rng.uniform(0.25, 0.5)
    seed = int(rng.integers(0, 2**31))

    def paint(wall: WallCanvas) -> None:
        r = np.random.default_rng(seed)
        cu, cv = wall.uv(site.theta, site.z)
        rp = wall.px(radius)
        if band:
            v0 = int(cv + 1.4 * rp)
            v1 = min(wall.image.shape[0], v0 + int(wall.px(band_len)))
            if v1 > v0:
                tint = color / (color.mean() + 1e-6)
                scale_layer(wall.image, (0, v0, wall.width, v1), np.broadcast_to(tint, (v1 - v0, wall.width, 3)))
        _ring(wall, cu, cv, rp * 1.05, max(3.0, rp * 0.22), color * 1.1, irregular=0.0, rng=r)
        _opening(r, wall, cu, cv, rp * 0.95, color, ring_dark=0.75)

    return Defect("OK", site.theta, site.z, radius * 1.2, paint=paint)
