"""One still inspection frame with given defects: the Sewer-ML image generator.

Everything random about a frame comes from `np.random.default_rng([seed, index])`, so frame
`index` of a dataset is the same whatever order or process renders it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from edgesewer.data.synth.catalog import FLOOR_CODES, KINDS, sample_angle
from edgesewer.data.synth.defects import Defect, Site
from edgesewer.data.synth.geometry import Z_FAR, Camera
from edgesewer.data.synth.overlay import sample_overlay
from edgesewer.data.synth.scene import Frame, Layers, render, sample_camera, sample_look
from edgesewer.data.synth.textures import strip_width_for
from edgesewer.data.synth.wall import build_wall, pick_material
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES

# The joint that joint-borne defects use sits this close (radii), so they are big enough at ~128 px.
NEAR, FAR = 0.9, 2.1


def water_depth_of(level_percent: float) -> float:
    """Sewer-ML WaterLevel (% of the pipe height) to water depth in radii."""
    return 2.0 * float(level_percent) / 100.0


def render_sample(codes: Iterable[str] = (), *, seed: int = 0, index: int = 0, size: tuple[int, int] = (320, 256),
                  water_level: float = 0.0, track_cracks: bool = False) -> Frame:
    """Render one frame showing exactly `codes` (Sewer-ML codes; empty = a normal pipe).

    `(seed, index)` pick the scene (the generator passes the 1-based file number as index);
    `water_level` is Sewer-ML's WaterLevel in % of the pipe height. Returns a `Frame` with a BGR
    uint8 image of `size` (width, height) and, with `track_cracks`, the RB crack mask (uint8 0/255).
    """
    codes = tuple(codes)
    unknown = [c for c in codes if c not in KINDS]
    if unknown:
        raise DataError(f"unknown defect code(s) {' '.join(unknown)}; valid: {' '.join(SEWER_CODES)}")
    width, height = size
    # Separate streams: the pipe, camera and lighting do not depend on which defects are drawn,
    # so the same (seed, index) with and without a defect differ only by the defect.
    rng = np.random.default_rng([seed, index, 0])
    defect_rng = np.random.default_rng([seed, index, 1])
    depth = water_depth_of(water_level)
    camera = sample_camera(rng, width, height, depth)
    look = sample_look(rng)
    overlay = sample_overlay(rng)
    strip_width = strip_width_for(width)

    joint_z = rng.uniform(NEAR + 0.1, FAR - 0.2)
    spacing = rng.uniform(2.4, 4.0)
    joints = joint_z + spacing * np.arange(-3, int(Z_FAR / spacing) + 2)
    joints = joints[(joints > 0.3) & (joints < Z_FAR)]
    material = pick_material(rng, lined="OS" in codes)
    wall = build_wall(rng, strip_width, material, Z_FAR + 0.5, 0.0, joints, track_cracks, marked_length=7.0)

    layers = Layers()
    flow = float(rng.uniform(0, 100))
    for defect in place_defects(defect_rng, codes, camera, depth, float(joint_z)):
        if defect.paint is not None:
            defect.paint(wall)
        if defect.view_op is not None:
            layers.view_ops.append((defect.z, defect.view_op))
        if defect.deformation is not None:
            layers.deformations.append(defect.deformation)
        if defect.mound is not None:
            layers.mounds.append(defect.mound)
    return render(wall, camera, look, 0.0, depth, layers, overlay, rng, flow=flow)


def render_frame(codes: Iterable[str] = (), *, seed: int = 0, size: tuple[int, int] = (320, 256),
                 water_level: float = 0.0) -> np.ndarray:
    """Just the BGR uint8 image of `render_sample` (what runtime and benchmark tests feed a model)."""
    return render_sample(codes, seed=seed, size=size, water_level=water_level).image


def anchor_visible(camera: Camera, theta: float, z_rel: float, margin: float = 0.08) -> bool:
    """Does the wall point at angle `theta`, depth `z_rel` land inside the frame (with a margin)?"""
    if z_rel <= 0.2:
        return False
    u, v = camera.project(np.cos(theta), np.sin(theta), z_rel)
    mu, mv = margin * camera.width, margin * camera.height
    return bool(mu <= u <= camera.width - mu and mv <= v <= camera.height - mv)


def place_defects(rng: np.random.Generator, codes: tuple[str, ...], camera: Camera, water_depth: float,
                  joint_z: float) -> list[Defect]:
    """Give each code a site that is visible, dry and does not overlap the others; make the defects."""
    placed: list[Defect] = []
    order = sorted(codes, key=lambda c: ("global", "floor", "joint", "side", "crown", "wall").index(KINDS[c].where))
    for code in order:
        kind = KINDS[code]
        if kind.where == "global":
            site = Site(3 * math.pi / 2, float(rng.uniform(*kind.depth)), water_depth)
        elif kind.where == "floor":
            z = float(rng.uniform(*kind.depth))
            other = next((d for d in placed if d.code in FLOOR_CODES), None)
            if other is not None:  # a brick on a mound would hide one of them
                z = other.z - 0.8 if other.z > 2.0 else other.z + 0.8
            site = Site(math.pi / 2, z, water_depth)
        else:
            site = _free_site(rng, code, camera, water_depth, joint_z, placed)
        placed.append(kind.make(rng, site))
    return placed


def _free_site(rng, code, camera, water_depth, joint_z, placed) -> Site:
    waterline = 1.0 - water_depth - 0.12  # anchors below this (y down) would be under water
    on_joint = KINDS[code].where == "joint"
    best = None
    for attempt in range(80):
        theta = sample_angle(rng, code)
        z = joint_z if on_joint else float(rng.uniform(*KINDS[code].depth))
        best = Site(theta, z, water_depth)
        if math.sin(theta) > waterline or not anchor_visible(camera, theta, z):
            continue
        if all(_apart(best, d, 0.25 if attempt < 60 else 0.0) for d in placed):
            return best
    return best  # crowded: accept an overlap rather than fail


def _apart(site: Site, other: Defect, gap: float) -> bool:
    if other.extent == 0.0 or other.code in FLOOR_CODES:
        return True
    dtheta = abs((site.theta - other.theta + math.pi) % (2 * math.pi) - math.pi)
    return math.hypot(dtheta, site.z - other.z) > other.extent + 0.3 + gap
