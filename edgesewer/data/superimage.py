"""Super-images (VideoPipe report): 9 frames of a clip tiled 3 x 3 into one image. numpy + OpenCV.

One implementation serves training (with augmentation), export calibration and the torch-free
runtime's clip mode, so that a deployed model sees exactly the layout it was trained on.

Layout, documented once:

* **Sampling** - a clip of `length` frames is cut into `k` equal segments; segment j covers
  positions [j * length / k, (j + 1) * length / k). Evaluation and the runtime take each segment's
  centre, `floor(start + (j + 0.5) * length / k)`; training may jitter uniformly inside the segment
  (TSN-style). Frames come out in time order. For 90 frames and k = 9: 5, 15, 25, ..., 85.
* **Tiling** - every frame is resized to `tile x tile` (whole frame, no crop, like `preprocess`)
  and placed on a `grid x grid` canvas in row-major order: grid position p (row p // grid, column
  p % grid) holds frame `order[p]`. Without a shuffle `order` is 0..8, so time runs left to right,
  then top to bottom.
* **Augmentation** - each frame is flipped horizontally on its own with probability `hflip`; with
  probability `shuffle` the tile order is a random permutation (the report's tile-order shuffle).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgesewer.data.preprocess import INTERPOLATIONS, preprocess

GRID = 3
N_FRAMES = GRID * GRID


def segment_positions(length: float, k: int = N_FRAMES, offsets: np.ndarray | float = 0.5) -> np.ndarray:
    """Float positions `(j + offset_j) * length / k` for j = 0..k-1 (0.5 = segment centres)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return (np.arange(k, dtype=np.float64) + offsets) * (float(length) / k)


def sample_indices(n_frames: int, k: int = N_FRAMES, rng: np.random.Generator | None = None,
                   start: int = 0, stop: int | None = None) -> np.ndarray:
    """`k` frame indices spread uniformly over frames [start, stop) (default: the whole video).

    Without `rng`: the centre of each of the k equal segments (deterministic). With `rng`: a
    uniformly random position inside each segment. Indices are ascending; when the range holds
    fewer than k frames some repeat.
    """
    stop = n_frames if stop is None else stop
    if not 0 <= start < stop <= n_frames:
        raise ValueError(f"need 0 <= start < stop <= n_frames, got start={start} stop={stop} n_frames={n_frames}")
    offsets = 0.5 if rng is None else rng.random(k)
    positions = start + segment_positions(stop - start, k, offsets)
    return np.clip(np.floor(positions).astype(np.int64), start, stop - 1)


def resize_tile(frame: np.ndarray, tile: int, interpolation: str = "bilinear") -> np.ndarray:
    """One (H, W, 3) uint8 frame resized to (tile, tile, 3); returned as is when already that size."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    if frame.shape[:2] == (tile, tile):
        return frame
    return cv2.resize(np.ascontiguousarray(frame), (tile, tile), interpolation=INTERPOLATIONS[interpolation])


def tile_frames(frames: Sequence[np.ndarray], tile: int, order: Sequence[int] | None = None, grid: int = GRID,
                interpolation: str = "bilinear") -> np.ndarray:
    """The (grid * tile, grid * tile, 3) uint8 super-image; grid position p holds frame `order[p]`."""
    n = grid * grid
    if len(frames) != n:
        raise ValueError(f"a {grid}x{grid} super-image needs {n} frames, got {len(frames)}")
    order = list(range(n)) if order is None else [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {order}")
    canvas = np.empty((grid * tile, grid * tile, 3), dtype=np.uint8)
    for p, i in enumerate(order):
        r, c = divmod(p, grid)
        canvas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = resize_tile(frames[i], tile, interpolation)
    return canvas


def augment_frames(frames: Sequence[np.ndarray], rng: np.random.Generator, hflip: float = 0.5,
                   shuffle: float = 0.5) -> tuple[list[np.ndarray], list[int]]:
    """(frames with independent random horizontal flips, tile order: a random permutation or identity)."""
    flipped = [f[:, ::-1] if rng.random() < hflip else f for f in frames]
    order = rng.permutation(len(frames)).tolist() if rng.random() < shuffle else list(range(len(frames)))
    return flipped, order


def make_superimage(frames: Sequence[np.ndarray], tile: int, *, rng: np.random.Generator | None = None,
                    hflip: float = 0.0, shuffle: float = 0.0, grid: int = GRID,
                    interpolation: str = "bilinear") -> np.ndarray:
    """Tile `frames` (RGB uint8, time order) into one super-image, augmenting when `rng` is given.

    Frames are shrunk to the tile first: flipping a tile is cheaper than flipping a full frame and
    gives the same pixels (the resize is symmetric).
    """
    tiles = [resize_tile(f, tile, interpolation) for f in frames]
    order = None
    if rng is not None:
        tiles, order = augment_frames(tiles, rng, hflip=hflip, shuffle=shuffle)
    return tile_frames(tiles, tile, order, grid, interpolation)


def superimage_input(frames: Sequence[np.ndarray], tile: int, mean: Sequence[float], std: Sequence[float],
                     grid: int = GRID, interpolation: str = "bilinear") -> np.ndarray:
    """Network input (1, 3, grid * tile, grid * tile) float32 for one clip, without augmentation."""
    image = make_superimage(frames, tile, grid=grid, interpolation=interpolation)
    return preprocess(image, grid * tile, mean, std, interpolation)


def tile_size_for(input_size: int, grid: int = GRID) -> int:
    """Side of one tile for a super-image model with `input_size` (must divide evenly by the grid)."""
    if input_size % grid:
        raise ValueError(f"super-image input {input_size} is not divisible by the {grid}x{grid} grid")
    return input_size // grid
