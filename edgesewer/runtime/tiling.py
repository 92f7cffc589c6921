"""Sliding-window inference for frames larger than the model input, with smooth overlap blending.

Crawler cameras give 720p or 1080p frames; the crack model is trained on 256x256 crops. The frame
is covered by model-size tiles that overlap by `overlap` pixels (half a tile unless told:
`tile_overlap`, the one value the runtime, `edgesewer eval`, the export accuracy report, the
benchmark and training validation share, so a model has one ODS) (the last tile in each direction
is moved flush with the border, so no padding is needed unless the frame is smaller than a tile).
Tile outputs are averaged with a separable raised-cosine weight that is largest at the tile centre
and small (but never zero) at its border, so predictions made with little context near a tile edge
count least and there are no visible seams.

numpy only (plus the caller's `predict`): the torch-free runtime, ONNX Runtime and TensorRT
backends, and PyTorch evaluation all use it through a `predict(batch NCHW float32) -> NCHW` callable.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
WEIGHT_FLOOR = 0.01  # weight at a tile's very border, relative to 1 at its centre


def tile_overlap(tile: int) -> int:
    """Overlap between neighbouring tiles: half a tile (128 px for SCNet's 256-px crops).

    Chosen on CrackForest's validation images (issue 14): half instead of a quarter raised validation ODS by
    0.25 and 0.9 points for two CPU-trained scnet checkpoints (test: +0.4, +0.9), at about 1.9x the tiles
    (a 480x320 image: 28 tiles of 128 px instead of 15)."""
    return tile // 2


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length): stride at most tile - overlap, last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    count = -(-(length - tile) // stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_weight(tile: int, floor: float = WEIGHT_FLOOR) -> np.ndarray:
    """tile x tile raised-cosine (Hann) window, rescaled to [floor, 1] so that no pixel gets zero weight."""
    centres = (np.arange(tile) + 0.5) / tile
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * centres)
    one_d = floor + (1 - floor) * hann
    return np.outer(one_d, one_d).astype(np.float32)


def tiled_predict(image: np.ndarray, predict: Predict, tile: int = 256, overlap: int | None = None,
                  batch_size: int = 4, weight_floor: float = WEIGHT_FLOOR) -> np.ndarray:
    """Run `predict` over overlapping tiles of a CxHxW float32 image -> KxHxW blended output.

    Frames smaller than a tile (in either direction) are reflect-padded up to the tile size and
    the output cropped back. `predict` receives batches of up to `batch_size` tiles [N,C,tile,tile]
    and must return [N,K,tile,tile]. `weight_floor` = 1 turns blending into plain averaging.
    `overlap` None: `tile_overlap(tile)`.
    """
    overlap = tile_overlap(tile) if overlap is None else overlap
    if image.ndim != 3:
        raise ValueError(f"tiled_predict needs a CxHxW array, got shape {image.shape}")
    _, height, width = image.shape
    pad_h, pad_w = max(0, tile - height), max(0, tile - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect" if min(height, width) > 1 else "edge")
    full_h, full_w = image.shape[1:]
    corners = [(y, x) for y in tile_starts(full_h, tile, overlap) for x in tile_starts(full_w, tile, overlap)]
    weight = blend_weight(tile, weight_floor)
    accumulated = np.zeros((0, full_h, full_w), dtype=np.float32)  # K is known after the first batch
    weight_sum = np.zeros((full_h, full_w), dtype=np.float32)

    for first in range(0, len(corners), batch_size):
        group = corners[first:first + batch_size]
        batch = np.stack([image[:, y:y + tile, x:x + tile] for y, x in group]).astype(np.float32, copy=False)
        output = np.asarray(predict(np.ascontiguousarray(batch)), dtype=np.float32)
        if output.ndim != 4 or output.shape[0] != len(group) or output.shape[2:] != (tile, tile):
            raise ValueError(f"predict returned shape {output.shape}; expected ({len(group)}, K, {tile}, {tile})")
        if first == 0:
            accumulated = np.zeros((output.shape[1], full_h, full_w), dtype=np.float32)
        for (y, x), tile_out in zip(group, output):
            accumulated[:, y:y + tile, x:x + tile] += tile_out * weight
            weight_sum[y:y + tile, x:x + tile] += weight

    return (accumulated / weight_sum)[:, :height, :width]
