"""Render one frame of the pipe interior from the unrolled wall, the camera and the floor layers.

Per frame: solve which surface each pixel sees (`geometry`), remap the wall strip through it,
light it with the crawler's lamp, shade water and deposits, project the 3-D objects, then add what
a CCTV camera adds (blur, sensor noise, gamma, the text overlay). Everything per pixel is numpy or
OpenCV; the strip and texture banks are built beforehand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from edgesewer.data.synth.canvas import TWO_PI, ViewCanvas, WallCanvas
from edgesewer.data.synth.geometry import (
    Camera,
    Deformation,
    FloorHit,
    Mound,
    lamp_light,
    solve_floor,
    solve_wall,
    wall_incidence,
)
from edgesewer.data.synth.overlay import OverlayStyle, draw_overlay
from edgesewer.data.synth.textures import TextureBank, texture_bank

ViewOp = Callable[[ViewCanvas], None]


@dataclass(frozen=True)
class Look:
    """Photometric settings of one inspection: exposure, lamp, colour cast, camera softness."""

    gain: float
    light_half: float  # distance (radii) at which the lamp light has halved
    tint: tuple[float, float, float]  # BGR multipliers (warm lamps, green-brown murk)
    gamma: float
    blur: float  # Gaussian sigma in pixels at 320 px width
    noise: float  # sensor-noise std in grey levels
    water_color: tuple[float, float, float]


def sample_look(rng: np.random.Generator) -> Look:
    warm = rng.uniform(0.0, 0.25)
    return Look(
        gain=float(rng.uniform(1.4, 1.9)),
        light_half=float(rng.uniform(1.6, 2.6)),
        tint=(float(1.0 - warm), float(1.0 + rng.uniform(-0.05, 0.08)), float(1.0 + 0.5 * warm)),
        gamma=float(rng.uniform(0.8, 1.0)),
        blur=float(rng.uniform(0.4, 1.1)),
        noise=float(rng.uniform(1.5, 6.0)),
        water_color=(float(rng.uniform(30, 55)), float(rng.uniform(50, 70)), float(rng.uniform(60, 85))),
    )


def sample_camera(rng: np.random.Generator, width: int, height: int, water_depth: float = 0.0) -> Camera:
    """A crawler camera roughly on the pipe axis, a little low, rolled and off-centre."""
    # Drawn independently of the water, then kept above it: the same scene with and without water.
    cy = min(float(rng.uniform(-0.05, 0.25)), 1.0 - water_depth - 0.2)
    return Camera(
        width=width,
        height=height,
        focal=float(width * rng.uniform(0.40, 0.50)),
        vpx=float(width * (0.5 + rng.uniform(-0.07, 0.07))),
        vpy=float(height * (0.5 + rng.uniform(-0.07, 0.07))),
        cx=float(rng.uniform(-0.1, 0.1)),
        cy=cy,
        roll=float(rng.uniform(-0.1, 0.1)),
    )


@dataclass
class Layers:
    """What changes the geometry or stands out of the wall, besides the painted strip."""

    deformations: list[Deformation] = field(default_factory=list)
    mounds: list[Mound] = field(default_factory=list)
    view_ops: list[tuple[float, ViewOp]] = field(default_factory=list)  # (pipe position, draw fn)


@dataclass
class Frame:
    """One rendered frame and, when the wall tracks cracks, where the cracks are in it."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    crack_mask: np.ndarray | None  # (H, W) uint8 0/255, None when the strip tracks no cracks


def render(wall: WallCanvas, cam: Camera, look: Look, cam_pos: float, water_depth: float, layers: Layers,
           overlay: OverlayStyle | None, rng: np.random.Generator, flow: float = 0.0) -> Frame:
    """Render the view from pipe position `cam_pos` (radii) looking down the pipe."""
    deform = _active_deformation(layers.deformations, cam_pos)
    hit = solve_wall(cam, cam_pos, deform)
    map_x = _angle_to_column(hit.theta, wall.width)
    map_y = (hit.z + np.float32(cam_pos - wall.origin)) * np.float32(wall.ppu)
    texels = cv2.remap(wall.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    exposure = np.asarray(look.tint, np.float32) * np.float32(look.gain)
    light = lamp_light(cam, hit.z, wall_incidence(cam, hit), look.light_half)[..., None]
    if wall.column_gain is not None:
        light = light * (wall.column_gain * exposure)[map_x.astype(np.int32) % wall.width]
    else:
        light = light * exposure
    color = texels * light

    bank = texture_bank(wall.width)
    floor = solve_floor(cam, hit, water_depth, layers.mounds, cam_pos)
    if floor.kind.any():
        _shade_floor(color, floor, cam, look, bank, wall, cam_pos, water_depth, flow, exposure)

    image = _tone_map(color, look.gamma)
    canvas = ViewCanvas(image, cam, cam_pos, look.light_half, look.gain, water_depth)
    for _, draw in sorted(layers.view_ops, key=lambda op: -op[0]):  # far objects first
        draw(canvas)
    image = _camera_artifacts(canvas.image, look, bank.sensor_noise, rng)
    if overlay is not None:
        draw_overlay(image, overlay, cam_pos)

    mask = None
    if wall.crack_mask is not None:
        seen = cv2.remap(wall.crack_mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        mask = np.where((seen >= 128) & (floor.kind == 0), 255, 0).astype(np.uint8)
    return Frame(image, mask)


def _angle_to_column(theta: np.ndarray, width: int) -> np.ndarray:
    """Strip column of a wall angle (the seam, column 0, is at the invert).

    May be negative: cv2.remap's BORDER_WRAP wraps it round the pipe, which is cheaper than `%`.
    """
    return ((theta - np.float32(math.pi / 2)) * np.float32(width / TWO_PI)).astype(np.float32, copy=False)


def remap_points(src: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear, wrap-around samples of `src` at N scattered points: (N,) or (N, C) result.

    cv2.remap wants 2-D maps below 32767 per side, so the points are laid out in rows of 256.
    """
    n = map_x.size
    cols = 256
    rows = -(-n // cols)
    pad = rows * cols - n
    mx = np.pad(map_x.astype(np.float32, copy=False), (0, pad)).reshape(rows, cols)
    my = np.pad(map_y.astype(np.float32, copy=False), (0, pad)).reshape(rows, cols)
    out = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return out.reshape(rows * cols, *src.shape[2:])[:n]


def _active_deformation(deformations: list[Deformation], cam_pos: float) -> Deformation | None:
    """The deformation nearest ahead of the camera (one at a time keeps the solve cheap)."""
    ahead = [d for d in deformations if d.end + d.ramp > cam_pos]
    return min(ahead, key=lambda d: d.start) if ahead else None


def _shade_floor(color: np.ndarray, floor: FloorHit, cam: Camera, look: Look, bank: TextureBank, wall: WallCanvas,
                 cam_pos: float, water_depth: float, flow: float, exposure: np.ndarray) -> None:
    ys, xs = np.nonzero(floor.kind)
    kind = floor.kind[ys, xs]
    t, x = floor.t[ys, xs], floor.x[ys, xs]
    a, b = (r[ys, xs] for r in cam.rays())
    dist = t * np.sqrt(1.0 + a * a + b * b)
    falloff = 1.0 / (1.0 + (dist / look.light_half) ** 2)
    light = falloff * (0.3 + 0.7 * np.clip(floor.cos[ys, xs] + 0.25, 0.0, 1.0))
    fx = (x * wall.ppu * 0.8).astype(np.float32)  # floor texture coordinates
    fz = ((t + cam_pos) * wall.ppu * 0.8).astype(np.float32)
    out = np.empty((ys.size, 3), np.float32)

    water = kind == 1
    if water.any():
        ripple = remap_points(bank.ripples, fx[water], fz[water] + np.float32(flow * wall.ppu))
        body = (0.35 + 0.5 * ripple)[:, None] * np.asarray(look.water_color, np.float32) * light[water, None]
        mirror = _reflection(wall, cam, a[water], b[water], t[water], x[water], 1.0 - water_depth, ripple,
                             cam_pos, look.light_half)
        glint = np.clip(ripple - 0.7, 0.0, None) * 500.0 * falloff[water]  # lamp glints on ripple crests
        out[water] = body + 0.28 * mirror + glint[:, None]
    deposit = kind == 2
    if deposit.any():
        gravel = remap_points(bank.gravel, fx[deposit], fz[deposit])
        out[deposit] = gravel.astype(np.float32) * light[deposit, None]
    color[ys, xs] = out * exposure


def _reflection(wall: WallCanvas, cam: Camera, a, b, t, x, level, ripple, cam_pos, light_half) -> np.ndarray:
    """The lit wall mirrored in the water: trace the reflected ray (a, -b) from the surface to the wall."""
    ra = a + 0.06 * (ripple - 0.5)  # ripples wobble the mirror image
    rb = -b
    qa = ra * ra + rb * rb
    qb = 2.0 * (x * ra + level * rb)
    qc = x * x + level * level - 1.0
    s = (-2.0 * qc) / np.maximum(qb + np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0)), 1e-6)
    depth = np.minimum(t + s, 12.0)
    hx, hy = x + ra * s, level + rb * s
    map_x = _angle_to_column(np.arctan2(hy, hx), wall.width)
    map_y = ((depth + cam_pos - wall.origin) * wall.ppu).astype(np.float32)
    texels = remap_points(wall.image, map_x, map_y)
    dist = depth * np.sqrt(1.0 + a * a + b * b)
    return texels.astype(np.float32) * (0.8 / (1.0 + (dist / light_half) ** 2))[:, None]


_GAMMA_LUTS: dict[float, np.ndarray] = {}


def _tone_map(color: np.ndarray, gamma: float) -> np.ndarray:
    key = round(gamma, 2)
    lut = _GAMMA_LUTS.get(key)
    if lut is None:
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** key, 0, 255).astype(np.uint8)
        _GAMMA_LUTS[key] = lut
    return cv2.LUT(cv2.convertScaleAbs(color), lut)  # colour is >= 0: a saturating cast to uint8


def _camera_artifacts(image: np.ndarray, look: Look, noise_bank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    sigma = look.blur * w / 320.0
    if sigma > 0.25:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if noise_bank.shape[0] < h or noise_bank.shape[1] < w:
        noise_bank = np.tile(noise_bank, (-(-h // noise_bank.shape[0]), -(-w // noise_bank.shape[1]), 1))
    y0 = int(rng.integers(0, noise_bank.shape[0] - h + 1))
    x0 = int(rng.integers(0, noise_bank.shape[1] - w + 1))
    noise = noise_bank[y0:y0 + h, x0:x0 + w].astype(np.float32)
    noisy = cv2.scaleAdd(noise, look.noise / 40.0, image.astype(np.float32))  # image + k * noise
    return cv2.convertScaleAbs(np.maximum(noisy, 0.0))
