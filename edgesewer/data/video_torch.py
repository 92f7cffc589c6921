"""PyTorch datasets over labelled videos: super-images for the super-image models, and the same 9
frames stacked for frame classifiers whose scores are aggregated per video.

Both read the 9 frames with `edgesewer.data.video.read_frames` at the positions of
`edgesewer.data.superimage.sample_indices` (segment centres for evaluation, jittered inside the
segments for training), so the two approaches see the same frames of a clip.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edgesewer.data.preprocess import preprocess
from edgesewer.data.superimage import GRID, N_FRAMES, make_superimage, resize_tile, sample_indices
from edgesewer.data.video import VideoLabels, probe_video, read_frames
from edgesewer.errors import DataError


class _ClipFrames(Dataset):
    """Shared part: per-video frame counts (probed once per process) and the frame sampling."""

    def __init__(self, labels: VideoLabels, tile: int, mean: Sequence[float], std: Sequence[float], *,
                 train: bool = False, hflip: float = 0.5, jitter: bool = True, interpolation: str = "bilinear",
                 min_frames: int = N_FRAMES, eval_cache_mb: float = 256.0, frames: int = N_FRAMES) -> None:
        if len(labels) == 0:
            raise DataError(f"{labels.source}: no videos to serve")
        self.labels, self.tile = labels, int(tile)
        self.mean, self.std = tuple(mean), tuple(std)
        self.train, self.hflip, self.jitter = train, hflip, jitter
        self.interpolation, self.min_frames, self.frames = interpolation, min(min_frames, frames), int(frames)
        self._n_frames: dict[int, int] = {}
        # Evaluation samples the same frames every epoch: keep their tiles when they all fit the budget.
        self._eval_cache: dict[int, list[np.ndarray]] = {}
        self._cache_eval = len(labels) * self.frames * self.tile * self.tile * 3 <= eval_cache_mb * 2**20

    def __len__(self) -> int:
        return len(self.labels)

    def _rng(self) -> np.random.Generator:
        # Drawn from torch's generator, which the DataLoader seeds per worker and per epoch.
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _tiles(self, i: int, rng: np.random.Generator | None) -> list[np.ndarray]:
        """The `frames` (9) sampled frames of video i, resized to the tile (RGB uint8, time order)."""
        if rng is None and i in self._eval_cache:
            return self._eval_cache[i]
        path = self.labels.path(i)
        if i not in self._n_frames:
            self._n_frames[i] = probe_video(path).n_frames
        n = self._n_frames[i]
        if n < self.min_frames:
            raise DataError(f"{path}: only {n} frames; a clip needs at least {self.min_frames}")
        indices = sample_indices(n, self.frames, rng)
        tiles = [resize_tile(f, self.tile, self.interpolation) for f in read_frames(path, indices)]
        if rng is None and self._cache_eval:
            self._eval_cache[i] = tiles
        return tiles

    def _target(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.labels.targets[i].astype(np.float32))


class SuperImageDataset(_ClipFrames):
    """(super-image 3 x 3t x 3t float32, targets K float32) per video.

    Training augments with per-frame horizontal flips (`hflip`), the tile-order shuffle
    (`shuffle`) and, with `jitter`, a random frame inside each of the 9 segments. Evaluation keeps
    every video's 9 tiles in memory (decoded once) when they all fit in `eval_cache_mb`.
    """

    def __init__(self, labels: VideoLabels, tile: int, mean: Sequence[float], std: Sequence[float], *,
                 train: bool = False, hflip: float = 0.5, shuffle: float = 0.5, jitter: bool = True,
                 interpolation: str = "bilinear", min_frames: int = N_FRAMES, eval_cache_mb: float = 256.0) -> None:
        super().__init__(labels, tile, mean, std, train=train, hflip=hflip, jitter=jitter,
                         interpolation=interpolation, min_frames=min_frames, eval_cache_mb=eval_cache_mb)
        self.shuffle = shuffle

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(i)
        rng = self._rng() if self.train else None
        tiles = self._tiles(i, rng if self.jitter else None)
        image = make_superimage(tiles, self.tile, rng=rng, hflip=self.hflip, shuffle=self.shuffle,
                                interpolation=self.interpolation)
        x = preprocess(image, GRID * self.tile, self.mean, self.std, self.interpolation)[0]
        return torch.from_numpy(x), self._target(i)


class ClipFramesDataset(_ClipFrames):
    """(frames x 3 x t x t float32, targets K float32) per video: 9 frames for frame classifiers,
    `frames` (e.g. 32) sampled the same way over the whole video for frame-stack models (Video Swin).

    Training flips each frame horizontally with probability `hflip` (the frame-level counterpart
    of the super-image augmentation; there is no tile order to shuffle).
    """

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(i)
        rng = self._rng() if self.train else None
        tiles = self._tiles(i, rng if self.jitter else None)
        if rng is not None:
            tiles = [t[:, ::-1] if rng.random() < self.hflip else t for t in tiles]
        x = preprocess(tiles, self.tile, self.mean, self.std, self.interpolation)
        return torch.from_numpy(x), self._target(i)
