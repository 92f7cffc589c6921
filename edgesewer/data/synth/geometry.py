"""Ray geometry of a camera looking down a pipe: which surface each pixel sees, and how lit it is.

World units are pipe radii. x points right, y DOWN (like image rows), z along the pipe away from
the camera; the pipe axis is x = y = 0. The camera sits at (cx, cy) in the cross-section and looks
along +z with focal length `focal` pixels and principal point (vpx, vpy): the vanishing point.
Every pixel's ray is (a, b, 1) in world units per unit of depth. The wall is where the ray meets
the (possibly squashed) unit circle; the floor layers (water plane, deposit mounds) are where the
ray meets them first. The crawler's lamp sits at the camera, so light falls with distance and with
the grazing angle - the far pipe fades into the black hole typical of CCTV sewer footage.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

Z_FAR = 12.0  # deeper than this everything is black anyway
Z_NEAR = 0.05


@dataclass(frozen=True)
class Camera:
    """Pinhole camera inside the pipe (see the module docstring for the axes)."""

    width: int
    height: int
    focal: float
    vpx: float
    vpy: float
    cx: float = 0.0
    cy: float = 0.0
    roll: float = 0.0  # radians, rotation of the image about the optical axis

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel world slopes (a, b): the ray through pixel (u, v) is (a, b, 1)."""
        return _rays(self.width, self.height, self.focal, self.vpx, self.vpy, self.roll)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates (u, v) of world points; z is depth in front of the camera (> 0)."""
        dx, dy = np.asarray(x) - self.cx, np.asarray(y) - self.cy
        c, s = np.cos(self.roll), np.sin(self.roll)
        xc, yc = c * dx + s * dy, -s * dx + c * dy
        zz = np.maximum(np.asarray(z, dtype=np.float64), Z_NEAR)
        return self.vpx + self.focal * xc / zz, self.vpy + self.focal * yc / zz


@functools.lru_cache(maxsize=64)
def _rays(width: int, height: int, focal: float, vpx: float, vpy: float, roll: float):
    u = (np.arange(width, dtype=np.float32) + 0.5 - vpx) / focal
    v = (np.arange(height, dtype=np.float32) + 0.5 - vpy) / focal
    xs, ys = np.meshgrid(u, v)
    c, s = np.float32(np.cos(roll)), np.float32(np.sin(roll))
    a, b = c * xs - s * ys, s * xs + c * ys
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Deformation:
    """An out-of-round stretch of pipe: the cross-section squashed along `angle` between start and end."""

    start: float  # absolute position along the pipe where the squash begins
    end: float
    strength: float  # fraction of the radius lost along the short axis at full squash
    angle: float  # direction of the short axis (radians, pi/2 = vertical)
    ramp: float = 0.6

    def squash(self, z_abs: np.ndarray) -> np.ndarray:
        rise = smoothstep((z_abs - self.start) / self.ramp)
        fall = 1.0 - smoothstep((z_abs - self.end) / self.ramp)
        return self.strength * rise * fall


@dataclass(frozen=True)
class Mound:
    """Settled deposits: a heap on the invert, raised-cosine along the pipe, parabolic across it."""

    center: float  # absolute position along the pipe
    length: float
    height: float  # in radii above the invert
    half_width: float
    x0: float = 0.0
    lumps: float = 0.0  # relative amplitude of the stony bumps on the heap
    phase: float = 0.0

    def height_at(self, x: np.ndarray, z_abs: np.ndarray) -> np.ndarray:
        along = np.clip((z_abs - self.center) * (2.0 / self.length), -1.0, 1.0)
        across = np.clip(1.0 - ((x - self.x0) * (1.0 / self.half_width)) ** 2, 0.0, None)
        bumps = 1.0 + self.lumps * np.sin(9.0 * x + self.phase) * np.sin(7.0 * z_abs + 2.0 * self.phase)
        return (0.5 * self.height) * (1.0 + np.cos(np.float32(np.pi) * along)) * across * bumps


def _circle_depth(a, b, cx, cy, s1=1.0, s2=1.0, angle=0.0):
    """Depth where rays (a, b) from (cx, cy) meet an ellipse with semi-axes s1 (along angle), s2."""
    if angle != 0.0:
        d0, d1 = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        a, b = a * d0 + b * d1, -a * d1 + b * d0
        cx, cy = cx * d0 + cy * d1, -cx * d1 + cy * d0
    cx, cy = np.float32(cx), np.float32(cy)
    ia, ib = 1.0 / (s1 * s1), 1.0 / (s2 * s2)  # scalars or per-pixel arrays
    qa = a * a * ia + b * b * ib
    qb = 2.0 * (cx * a * ia + cy * b * ib)
    qc = cx * cx * ia + cy * cy * ib - 1.0  # < 0: the camera is inside
    disc = np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0))
    # The conjugate form stays finite at the vanishing point, where qa -> 0.
    return (-2.0 * qc) / np.maximum(qb + disc, 1e-6)


@dataclass
class WallHit:
    """Per-pixel result of the wall solve."""

    z: np.ndarray  # depth along the pipe axis, relative to the camera
    theta: np.ndarray  # angle round the pipe (0 = right, pi/2 = down)
    px: np.ndarray  # hit point in the cross-section
    py: np.ndarray


def solve_wall(cam: Camera, cam_pos: float = 0.0, deform: Deformation | None = None) -> WallHit:
    """Where every pixel's ray meets the pipe wall (squashed where `deform` says so)."""
    a, b = cam.rays()
    z = _circle_depth(a, b, cam.cx, cam.cy)
    s1 = s2 = np.float32(1.0)
    angle = 0.0
    if deform is not None:
        angle = deform.angle
        # Fixed-point iteration: the ellipse depends on the depth the ray reaches; damped to settle.
        for it in range(6):
            e = deform.squash(cam_pos + np.minimum(z, Z_FAR)).astype(np.float32)
            s1, s2 = 1.0 - e, 1.0 + 0.5 * e
            z_new = _circle_depth(a, b, cam.cx, cam.cy, s1, s2, angle)
            z = z_new if it < 2 else 0.5 * (z + z_new)
    z = np.clip(z, Z_NEAR, Z_FAR).astype(np.float32)
    px, py = np.float32(cam.cx) + a * z, np.float32(cam.cy) + b * z
    if deform is None:
        theta = np.arctan2(py, px)
    else:
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        p1, p2 = px * ca + py * sa, -px * sa + py * ca
        theta = np.arctan2(p2 / s2, p1 / s1) + np.float32(angle)
    return WallHit(z, theta.astype(np.float32, copy=False), px, py)


def lamp_light(cam: Camera, depth: np.ndarray, cos_incidence: np.ndarray, half_distance: float) -> np.ndarray:
    """Crawler-lamp irradiance: inverse-square-like falloff times a soft Lambert term."""
    a, b = cam.rays()
    dist = depth * np.sqrt(1.0 + a * a + b * b)
    cos_t = np.clip(cos_incidence, 0.0, 1.0)
    return ((0.3 + 0.7 * cos_t) / (1.0 + (dist / half_distance) ** 2)).astype(np.float32)


def wall_incidence(cam: Camera, hit: WallHit) -> np.ndarray:
    """Cosine between the wall normal (radial) and the ray back to the lamp."""
    a, b = cam.rays()
    norm_p = np.sqrt(hit.px**2 + hit.py**2) + 1e-6
    return (a * hit.px + b * hit.py) / (norm_p * np.sqrt(1.0 + a * a + b * b))


@dataclass
class FloorHit:
    """Pixels that see the water surface or a deposit mound before the wall."""

    kind: np.ndarray  # uint8: 0 wall, 1 water, 2 deposit
    t: np.ndarray  # depth of the floor hit (valid where kind > 0)
    x: np.ndarray  # lateral position of the hit
    cos: np.ndarray  # incidence cosine at the hit


def solve_floor(cam: Camera, wall: WallHit, water_depth: float, mounds: list[Mound],
                cam_pos: float = 0.0, steps: int = 20) -> FloorHit:
    """Water plane at y = 1 - water_depth (depth in radii) and deposit mounds, whichever comes first."""
    a, b = cam.rays()
    kind = np.zeros(a.shape, np.uint8)
    t_best = wall.z.copy()
    x_best = np.zeros_like(a)
    cos_best = np.zeros_like(a)
    inv_norm = 1.0 / np.sqrt(1.0 + a * a + b * b)
    level = 1.0 - water_depth
    if water_depth > 0 and level > cam.cy:
        down = b > 1e-4
        t_w = np.where(down, (level - cam.cy) / np.maximum(b, 1e-4), np.float32(1e9))
        hit = down & (t_w < t_best)
        kind[hit] = 1
        t_best[hit] = t_w[hit]
        x_best[hit] = (cam.cx + a * t_w)[hit]
        cos_best[hit] = (b * inv_norm)[hit]
    for mound in mounds:
        _march_mound(cam, mound, cam_pos, steps, a, b, inv_norm, kind, t_best, x_best, cos_best)
    return FloorHit(kind, t_best, x_best, cos_best)


def _march_mound(cam, mound, cam_pos, steps, a, b, inv_norm, kind, t_best, x_best, cos_best) -> None:
    """First crossing of each ray into the heap: coarse march, then two secant refinements."""
    lo = mound.center - 0.5 * mound.length - cam_pos
    hi = mound.center + 0.5 * mound.length - cam_pos
    if hi <= Z_NEAR or lo >= Z_FAR:
        return
    t_lo = max(lo, Z_NEAR)
    t_end = np.minimum(t_best, hi)
    top = 1.0 - mound.height * (1.0 + mound.lumps)
    # Only rays that go down far enough, within the heap's stretch, to reach its top can hit it.
    idx = np.flatnonzero((b > 0.02) & (t_best > t_lo) & (cam.cy + b * t_end >= top))
    if idx.size == 0:
        return
    ai, bi = a.ravel()[idx, None], b.ravel()[idx, None]
    t_hi = t_end.ravel()[idx][:, None]
    ts = t_lo + (t_hi - t_lo) * np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :]

    def gap(t):  # >= 0: the ray is inside the heap
        return (cam.cy + bi * t) - (1.0 - mound.height_at(cam.cx + ai * t, cam_pos + t))

    inside = gap(ts) >= 0
    first = inside.argmax(axis=1)
    ok = inside[np.arange(idx.size), first] & (first > 0)
    if not ok.any():
        return
    rows = np.flatnonzero(ok)
    ai, bi = ai[rows], bi[rows]
    t0, t1 = ts[rows, first[rows] - 1][:, None], ts[rows, first[rows]][:, None]
    for _ in range(2):  # secant steps, keeping the root bracketed
        g0, g1 = gap(t0), gap(t1)
        tm = t0 + (t1 - t0) * np.clip(g0 / np.minimum(g0 - g1, -1e-6), 0.0, 1.0)
        gm = gap(tm)
        t0, t1 = np.where(gm < 0, tm, t0), np.where(gm < 0, t1, tm)
    t_hit = t1[:, 0]
    x_hit = cam.cx + ai[:, 0] * t_hit
    eps = 0.02
    hx = (mound.height_at(x_hit + eps, cam_pos + t_hit) - mound.height_at(x_hit - eps, cam_pos + t_hit)) / (2 * eps)
    hz = (mound.height_at(x_hit, cam_pos + t_hit + eps) - mound.height_at(x_hit, cam_pos + t_hit - eps)) / (2 * eps)
    # Upward surface normal (-hx, -1, -hz); ray back to the lamp is -(a, b, 1).
    flat = idx[rows]
    cos = (hx * ai[:, 0] + bi[:, 0] + hz) / np.sqrt(1.0 + hx * hx + hz * hz) * inv_norm.ravel()[flat]
    kind.ravel()[flat] = 2
    t_best.ravel()[flat] = t_hit
    x_best.ravel()[flat] = x_hit
    cos_best.ravel()[flat] = cos
