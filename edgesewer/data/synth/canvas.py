"""The two surfaces defects are drawn on.

`WallCanvas` is the pipe wall unrolled into a strip (columns = angle round the pipe, rows =
position along it, both at `ppu` texels per radius, so shapes keep their proportions). Anything
painted there is carried into every view by the perspective remap: it grows from the vanishing
point and slides out of the frame as the camera travels. `ViewCanvas` is the rendered frame, for
things that stand out of the wall (roots, sealing rings, obstacles): they are 3-D polylines and
polygons projected with the camera and drawn after the wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesewer.data.synth.geometry import Camera

TWO_PI = 2.0 * math.pi


@dataclass
class WallCanvas:
    """The unrolled pipe wall: BGR strip plus an optional crack mask in the same texels."""

    image: np.ndarray  # (rows, width, 3) uint8
    crack_mask: np.ndarray | None  # (rows, width) uint8, 255 = crack; None when not tracked
    ppu: float  # texels per pipe radius (both axes)
    origin: float = 0.0  # absolute pipe position of row 0
    material: str = "concrete"
    # (width, 3) BGR gain per column, applied at render time (the wet band along the invert):
    # cheaper on the frame's pixels than on the whole strip.
    column_gain: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def u(self, theta: float) -> float:
        """Column of an angle; the seam (column 0) is at the invert, where water hides it."""
        return ((theta - math.pi / 2) % TWO_PI) * self.width / TWO_PI

    def v(self, z_abs: float) -> float:
        return (z_abs - self.origin) * self.ppu

    def uv(self, theta: float, z_abs: float) -> tuple[float, float]:
        return self.u(theta), self.v(z_abs)

    def px(self, length: float) -> float:
        """A length in radii, in texels."""
        return length * self.ppu


@dataclass
class ViewCanvas:
    """A rendered frame that 3-D objects are projected onto."""

    image: np.ndarray  # (H, W, 3) uint8, drawn in place
    camera: Camera
    cam_pos: float  # absolute pipe position of the camera
    light_half: float  # lamp half-brightness distance (radii)
    gain: float  # exposure
    water_depth: float  # radii of water above the invert (0 = dry)

    def project(self, x, y, z_abs) -> np.ndarray:
        """(N, 2) float image points of world points given at absolute pipe positions."""
        u, v = self.camera.project(np.asarray(x), np.asarray(y), np.asarray(z_abs) - self.cam_pos)
        return np.stack([np.atleast_1d(u), np.atleast_1d(v)], axis=-1)

    def brightness(self, z_abs: float, facing: float = 0.8) -> float:
        """Lamp light reaching a surface at pipe position z_abs, like the wall shading."""
        dist = max(z_abs - self.cam_pos, 0.05)
        return self.gain * (0.3 + 0.7 * facing) / (1.0 + (dist / self.light_half) ** 2)

    def scale(self, z_abs: float) -> float:
        """Pixels per radius at pipe position z_abs (for line widths)."""
        return self.camera.focal / max(z_abs - self.cam_pos, 0.05)

    def shade(self, color: tuple[float, float, float], z_abs: float, facing: float = 0.8) -> tuple[int, int, int]:
        k = self.brightness(z_abs, facing)
        return tuple(int(min(255.0, max(0.0, c * k))) for c in color)  # type: ignore[return-value]
