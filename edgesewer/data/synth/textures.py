"""Texture banks for the synthetic sewer: pipe-wall materials, water ripples, gravel, sensor noise.

Textures are periodic 1/f noise made with an FFT (periodic in both axes, so a wall tile can be
wrapped round the pipe and repeated along it without seams). They are built once per process
and strip width from a fixed seed: every image then picks a material and a random roll of it,
which costs a copy instead of an FFT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

BANK_SEED = 20240611  # textures are the "pipe stock": the same for every dataset seed
WALL_TILE_ROWS = 1024


@dataclass(frozen=True)
class Material:
    """A pipe-wall material: mean colour (BGR, 0-255), grain and aggregate speckle."""

    name: str
    color: tuple[float, float, float]
    roughness: float  # amplitude of the fine grain, relative to the colour
    blotches: float  # amplitude of the large, low-frequency staining
    speckle: float  # fraction of texels that are aggregate dots


MATERIALS: dict[str, Material] = {
    "concrete": Material("concrete", (118.0, 132.0, 146.0), 0.12, 0.22, 0.02),
    "clay": Material("clay", (62.0, 100.0, 150.0), 0.10, 0.18, 0.006),
    "old_concrete": Material("old_concrete", (92.0, 112.0, 122.0), 0.16, 0.30, 0.03),
    # Relined pipes (the only place where lateral reinstatement cuts exist) are smooth.
    "liner": Material("liner", (150.0, 168.0, 160.0), 0.05, 0.10, 0.0),
}
# How often each material is drawn for an ordinary pipe (liner is forced for OS and rare otherwise).
MATERIAL_WEIGHTS: dict[str, float] = {"concrete": 0.42, "clay": 0.30, "old_concrete": 0.20, "liner": 0.08}


def periodic_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float,
                   stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f**beta spectrum, periodic in both axes.

    `stretch` (rows, cols) > 1 makes the pattern longer along that axis (ripples along the flow).
    """
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfft2(white)
    fy = np.fft.fftfreq(shape[0])[:, None] * stretch[0]
    fx = np.fft.rfftfreq(shape[1])[None, :] * stretch[1]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0
    spectrum /= freq**beta
    spectrum[0, 0] = 0.0
    out = np.fft.irfft2(spectrum, s=shape)
    return (out / (out.std() + 1e-12)).astype(np.float32)


def _wall_tile(rng: np.random.Generator, material: Material, rows: int, cols: int) -> np.ndarray:
    grain = periodic_noise(rng, (rows, cols), beta=0.9)
    stains = periodic_noise(rng, (rows, cols), beta=2.4)
    shade = 1.0 + material.roughness * grain + material.blotches * stains
    color = np.asarray(material.color, np.float32)
    # A little per-channel drift so stains are brownish/greenish, not just darker.
    tint = 1.0 + 0.06 * stains[..., None] * np.array([-1.0, 0.2, 0.8], np.float32)
    tile = shade[..., None] * color * tint
    if material.speckle > 0:
        dots = grain > np.quantile(grain, 1.0 - material.speckle)
        pits = grain < np.quantile(grain, material.speckle * 0.6)
        tile[dots] *= 1.35
        tile[pits] *= 0.55
    return np.clip(tile, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class TextureBank:
    """All textures of one strip width (the unrolled pipe circumference in texels)."""

    width: int
    # material name -> (2 * WALL_TILE_ROWS, 2 * width, 3) uint8: one periodic tile repeated 2 x 2, so that
    # any rolled window of one period is a plain slice.
    walls: dict[str, np.ndarray]
    ripples: np.ndarray  # (256, 256) float32 in [0, 1], periodic, stretched along the flow
    gravel: np.ndarray  # (256, 256, 3) uint8, periodic
    sensor_noise: np.ndarray  # (512, 512, 3) int8 zero-mean Gaussian


@functools.lru_cache(maxsize=4)
def texture_bank(width: int) -> TextureBank:
    """Build (once per process and width) the texture bank; ~0.3 s at width 512."""
    rng = np.random.default_rng([BANK_SEED, width])
    walls = {name: np.tile(_wall_tile(rng, mat, WALL_TILE_ROWS, width), (2, 2, 1)) for name, mat in MATERIALS.items()}
    ripple = periodic_noise(rng, (256, 256), beta=1.8, stretch=(3.0, 1.0))
    ripple = (ripple - ripple.min()) / (ripple.max() - ripple.min())
    stones = periodic_noise(rng, (256, 256), beta=1.1)
    # Rounded stones: threshold a smoothed field, then shade each stone by the field value.
    blobs = cv2.GaussianBlur(stones, (0, 0), 2.0)
    gravel_shade = 0.7 + 0.45 * np.tanh(blobs * 2.5) + 0.12 * stones
    sand = np.array([78.0, 112.0, 138.0], np.float32)
    gravel = np.clip(gravel_shade[..., None] * sand, 0, 255).astype(np.uint8)
    noise = np.clip(rng.standard_normal((512, 512, 3)) * 40, -127, 127).astype(np.int8)
    return TextureBank(width, walls, ripple.astype(np.float32), gravel, noise)


def strip_width_for(image_width: int) -> int:
    """Texels round the circumference: ~1.6 texels per output pixel, a multiple of 64."""
    return max(256, int(round(1.6 * image_width / 64.0)) * 64)


def wall_strip(bank: TextureBank, material: str, rows: int, rng: np.random.Generator) -> np.ndarray:
    """A fresh (rows, width, 3) unrolled-wall strip: the material tile rolled and repeated."""
    doubled = bank.walls[material]
    roll_v = int(rng.integers(0, WALL_TILE_ROWS))
    roll_u = int(rng.integers(0, bank.width))
    period = doubled[roll_v:roll_v + WALL_TILE_ROWS, roll_u:roll_u + bank.width]
    if rows <= WALL_TILE_ROWS:
        return np.ascontiguousarray(period[:rows])
    return np.tile(period, (-(-rows // WALL_TILE_ROWS), 1, 1))[:rows].copy()
