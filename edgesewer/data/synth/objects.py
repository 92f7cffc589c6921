"""Defects that stand out of the wall or change the pipe's shape.

RO roots and IS sealing rings hang from a joint into the pipe and FO obstacles lie in the flow: they
are 3-D polylines / boxes fixed in pipe coordinates and projected into every frame. AF settled
deposits are a mound on the invert and DE deformation squashes the cross-section; both change the
ray geometry itself (see `geometry.Mound`, `geometry.Deformation`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgesewer.data.synth.canvas import ViewCanvas
from edgesewer.data.synth.defects import Defect, Site
from edgesewer.data.synth.geometry import Deformation, Mound
from edgesewer.data.synth.paint import ONE, SHIFT, bgr, fixed


def _draw_strand(view: ViewCanvas, points: np.ndarray, width: float, color: np.ndarray) -> None:
    """Project a 3-D polyline (x, y, z_abs) and draw it with a perspective-correct width."""
    if points[:, 2].min() - view.cam_pos < 0.15:
        return  # behind or brushing the lens
    uv = view.project(points[:, 0], points[:, 1], points[:, 2])
    z_mid = float(points[:, 2].mean())
    thick = max(1, int(round(width * view.scale(z_mid))))
    cv2.polylines(view.image, [fixed(uv)], False, view.shade(color, z_mid), thick, cv2.LINE_AA, SHIFT)


def make_ro(rng: np.random.Generator, site: Site) -> Defect:
    """Roots: a tuft of brown, hairy, branching tendrils growing into the pipe through a joint."""
    spread = rng.uniform(0.5, 1.2)
    strands: list[tuple[np.ndarray, float, np.ndarray]] = []
    base = np.array([45, 85, 125], np.float64) * rng.uniform(0.8, 1.2)
    for _ in range(int(rng.integers(25, 55))):
        theta = site.theta + rng.uniform(-0.5, 0.5) * spread
        start = np.array([0.98 * math.cos(theta), 0.98 * math.sin(theta), site.z + rng.normal(0, 0.03)])
        heading = np.array([-math.cos(theta), -math.sin(theta), rng.normal(0, 0.3)])
        length = rng.uniform(0.35, 1.1)
        points = _grow(rng, start, heading, length, droop=rng.uniform(0.3, 1.0))
        color = base * rng.uniform(0.7, 1.3) if rng.random() < 0.75 else np.array([130, 165, 190.0])
        strands.append((points, rng.uniform(0.01, 0.03), color))
        if rng.random() < 0.5:  # a side shoot
            k = int(rng.integers(1, len(points) - 1))
            twig = _grow(rng, points[k], heading + rng.normal(0, 0.8, 3), length * 0.4, droop=0.8)
            strands.append((twig, 0.006, color))

    def draw(view: ViewCanvas) -> None:
        for points, width, color in strands:
            _draw_strand(view, points, width, color)

    tips = np.array([points[-1, :2] for points, _, _ in strands])
    center = (float(tips[:, 0].mean()), float(tips[:, 1].mean()))
    return Defect("RO", site.theta, site.z, 0.5 * spread + 0.2, view_op=draw, view_point=center)


def _grow(rng: np.random.Generator, start: np.ndarray, heading: np.ndarray, length: float, droop: float) -> np.ndarray:
    n = 10
    direction = heading / (np.linalg.norm(heading) + 1e-9)
    points = [start]
    for _ in range(n):
        direction = direction + rng.normal(0, 0.35, 3) + np.array([0.0, 0.25 * droop, 0.0])  # gravity pulls
        direction /= np.linalg.norm(direction) + 1e-9
        nxt = points[-1] + direction * length / n
        radial = math.hypot(nxt[0], nxt[1])
        if radial > 0.99:  # stay inside the pipe
            nxt[:2] *= 0.99 / radial
        points.append(nxt)
    return np.asarray(points)


def make_is(rng: np.random.Generator, site: Site) -> Defect:
    """Intruding sealing material: a light rubber ring come loose at a joint, sagging into the pipe."""
    width = rng.uniform(1.2, 2.6)
    sag = rng.uniform(0.15, 0.35)
    thickness = rng.uniform(0.06, 0.1)
    color = np.array([200, 212, 220.0]) * rng.uniform(0.85, 1.1) * rng.uniform(0.92, 1.05, 3)
    s = np.linspace(0.0, 1.0, 40)
    theta = site.theta + (s - 0.5) * width
    radius = 0.98 - sag * np.sin(math.pi * s) ** 1.2
    ring = np.stack([radius * np.cos(theta), radius * np.sin(theta), np.full_like(s, site.z)], axis=1)

    shadow = ring.copy()
    shadow[:, 2] += 0.02

    def draw(view: ViewCanvas) -> None:
        _draw_strand(view, shadow, thickness * 1.5, color * 0.25)
        _draw_strand(view, ring, thickness, color)
        highlight = ring.copy()
        highlight[:, :2] *= 1.0 - 0.3 * thickness
        _draw_strand(view, highlight, thickness * 0.3, np.minimum(color * 1.25, 255))

    middle = ring[len(ring) // 2]
    return Defect("IS", site.theta, site.z, 0.5 * width, view_op=draw, view_point=(float(middle[0]), float(middle[1])))


def make_fo(rng: np.random.Generator, site: Site) -> Defect:
    """Obstacle: a brick or a stone lying in the flow on the invert."""
    x0 = rng.uniform(-0.3, 0.3)
    brick = rng.random() < 0.6
    if brick:
        size = np.array([rng.uniform(0.45, 0.65), rng.uniform(0.2, 0.3), rng.uniform(0.25, 0.38)])
        red = rng.random() < 0.7  # red clay brick, else a grey concrete block
        color = np.array([55, 75, 165.0]) * rng.uniform(0.8, 1.15) if red else np.array([150, 150, 150.0])
    else:
        size = np.array([rng.uniform(0.4, 0.6), rng.uniform(0.22, 0.35), rng.uniform(0.3, 0.45)])
        color = np.array([120, 125, 125.0]) * rng.uniform(0.7, 1.2)
    yaw = rng.uniform(-0.6, 0.6)
    floor_y = math.sqrt(max(1.0 - x0 * x0, 0.0)) - 0.04
    solid = _box_corners(x0, floor_y, site.z, size, yaw) if brick else _stone_points(rng, x0, floor_y, site.z, size)

    def draw(view: ViewCanvas) -> None:
        if solid[:, 2].min() - view.cam_pos < 0.2:
            return
        if brick:
            _draw_box(view, solid, color)
        else:
            _draw_stone(view, solid, color, site.z)

    return Defect("FO", math.pi / 2, site.z, 0.35, view_op=draw, view_point=(x0, floor_y - 0.1))


def _box_corners(x0, floor_y, z0, size, yaw) -> np.ndarray:
    sx, sy, sz = size / 2
    corners = np.array([[dx, dy, dz] for dx in (-sx, sx) for dy in (-2 * sy, 0.0) for dz in (-sz, sz)])
    c, s = math.cos(yaw), math.sin(yaw)
    x = corners[:, 0] * c - corners[:, 2] * s
    z = corners[:, 0] * s + corners[:, 2] * c
    return np.stack([x0 + x, floor_y + corners[:, 1], z0 + z], axis=1)


_BOX_FACES = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 2, 6, 4), (1, 5, 7, 3), (0, 4, 5, 1), (2, 3, 7, 6))


def _draw_box(view: ViewCanvas, corners: np.ndarray, color: np.ndarray) -> None:
    uv = view.project(corners[:, 0], corners[:, 1], corners[:, 2])
    cam = np.array([view.camera.cx, view.camera.cy, view.cam_pos])
    center = corners.mean(axis=0)
    faces = []
    for face in _BOX_FACES:
        pts = corners[list(face)]
        normal = np.cross(pts[1] - pts[0], pts[3] - pts[0])
        mid = pts.mean(axis=0)
        if np.dot(normal, mid - center) < 0:
            normal = -normal
        to_cam = cam - mid
        facing = float(np.dot(normal, to_cam) / (np.linalg.norm(normal) * np.linalg.norm(to_cam) + 1e-9))
        if facing > 0:
            faces.append((np.linalg.norm(to_cam), face, facing, mid[2]))
    for _, face, facing, z_mid in sorted(faces, key=lambda f: -f[0]):
        pts = np.round(uv[list(face)] * ONE).astype(np.int32)
        cv2.fillPoly(view.image, [pts], view.shade(color, z_mid, facing), cv2.LINE_AA, SHIFT)
        cv2.polylines(view.image, [pts], True, view.shade(color * 0.5, z_mid, facing), 1, cv2.LINE_AA, SHIFT)


def _stone_points(rng, x0, floor_y, z0, size) -> np.ndarray:
    t = rng.uniform(0, 2 * math.pi, 40)
    p = rng.uniform(0, math.pi / 2, 40)  # upper half of an ellipsoid
    r = rng.uniform(0.85, 1.0, 40)
    x = x0 + r * size[0] / 2 * np.cos(t) * np.cos(p)
    z = z0 + r * size[2] / 2 * np.sin(t) * np.cos(p)
    y = floor_y - r * size[1] * np.sin(p)
    return np.stack([x, y, z], axis=1)


def _draw_stone(view: ViewCanvas, points: np.ndarray, color: np.ndarray, z0: float) -> None:
    uv = view.project(points[:, 0], points[:, 1], points[:, 2]).astype(np.float32)
    hull = cv2.convexHull(uv)[:, 0, :]
    cv2.fillPoly(view.image, [fixed(hull)], view.shade(color * 0.8, z0), cv2.LINE_AA, SHIFT)
    center = hull.mean(axis=0)
    top = center + (hull - center) * 0.6 - [0.0, 0.15 * (hull[:, 1].max() - hull[:, 1].min())]
    cv2.fillPoly(view.image, [fixed(top)], view.shade(color * 1.1, z0, 1.0), cv2.LINE_AA, SHIFT)
    cv2.polylines(view.image, [fixed(hull)], True, bgr(np.array(view.shade(color, z0)) * 0.4), 1, cv2.LINE_AA, SHIFT)


def make_af(rng: np.random.Generator, site: Site) -> Defect:
    """Settled deposits: a sand and gravel mound on the invert."""
    height = max(rng.uniform(0.3, 0.55), site.water_depth + rng.uniform(0.15, 0.3))  # a heap shows above water
    mound = Mound(center=site.z, length=rng.uniform(1.0, 2.2), height=height,
                  half_width=rng.uniform(0.65, 0.95), x0=rng.uniform(-0.15, 0.15), lumps=rng.uniform(0.08, 0.2),
                  phase=rng.uniform(0, 2 * math.pi))
    return Defect("AF", math.pi / 2, site.z, 0.6, mound=mound, view_point=(mound.x0, 1.0 - 0.8 * height))


def make_de(rng: np.random.Generator, site: Site) -> Defect:
    """Deformation: the pipe squashed out of round over a stretch, mostly from above."""
    deformation = Deformation(start=site.z, end=site.z + rng.uniform(3.0, 6.0), strength=rng.uniform(0.28, 0.42),
                              angle=math.pi / 2 + rng.uniform(-0.45, 0.45), ramp=rng.uniform(0.4, 0.8))
    return Defect("DE", site.theta, site.z, 0.0, deformation=deformation)
