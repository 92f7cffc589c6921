"""A PyTorch Dataset over a Sewer-ML split, using the shared numpy preprocessing."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edgesewer.data.images import read_image
from edgesewer.data.preprocess import preprocess
from edgesewer.data.sewerml import SewerMLSplit
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES

log = logging.getLogger(__name__)


class SewerMLDataset(Dataset):
    """(image tensor 3 x size x size float32, label tensor 17 float32) for each row of a split.

    Args:
        split: the rows to serve (`load_split`, possibly a subset).
        size, mean, std, interpolation: passed to `preprocess` (take them from the ModelCfg).
        augment: optional callable on the (H, W, 3) uint8 RGB image, applied before preprocessing.
        on_bad_image: "skip" serves the next readable row instead of an unreadable image (its
            own label with it), counts it in `skipped` and logs one warning per file; "error"
            raises the DataError. Counters live in the process that reads: with DataLoader
            workers each worker keeps its own.

    An unlabelled split (labels None) yields all-zero label vectors.
    """

    def __init__(
        self,
        split: SewerMLSplit,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        on_bad_image: str = "skip",
        interpolation: str = "bilinear",
    ) -> None:
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        if len(split) == 0:
            raise DataError(f"{split.csv_path}: the split has no rows")
        self.split = split
        self.size = size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment
        self.on_bad_image = on_bad_image
        self.interpolation = interpolation
        self.skipped = 0  # how many times an unreadable image was replaced
        self.bad_rows: set[int] = set()  # rows known to be unreadable: not read again

    def __len__(self) -> int:
        return len(self.split)

    def _label(self, i: int) -> torch.Tensor:
        if self.split.labels is None:
            return torch.zeros(len(SEWER_CODES), dtype=torch.float32)
        return torch.from_numpy(self.split.labels[i].astype(np.float32))

    def _read(self, i: int) -> tuple[int, np.ndarray]:
        """Row index actually served and its image (the next readable one when skipping)."""
        n = len(self.split)
        for step in range(n):
            j = (i + step) % n
            if j in self.bad_rows:
                self.skipped += 1
                continue
            try:
                return j, read_image(self.split.image_path(j))
            except DataError as exc:
                if self.on_bad_image == "error":
                    raise
                self.bad_rows.add(j)
                self.skipped += 1
                log.warning("skipping unreadable image: %s", exc)
        raise DataError(f"{self.split.image_dir}: none of the {n} images of the split is readable")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j, image = self._read(int(i))
        if self.augment is not None:
            image = self.augment(image)
        x = preprocess(image, self.size, self.mean, self.std, self.interpolation)[0]
        return torch.from_numpy(x), self._label(j)
