"""Known label errors in public crack sets: masks that belong to another photo.

A mask copied from another photo scores a model against cracks the photo does not show, and trains it to
see them. Such a pair is left out of every split it falls in (train, val, test alike), after the split
is drawn, so the other images keep their splits. Each entry names the mask file, the hash of its mask
(a corrected copy of the file no longer matches and is kept), and the evidence; the loader logs each
pair it leaves out, and `CrackFolder.excluded` lists them for reports.

`identical_masks` finds masks shared by different photos in any set; it is how the entry below was found
(and what its test checks on the real set).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import numpy as np

log = logging.getLogger(__name__)

Pair = TypeVar("Pair")


@dataclass(frozen=True)
class LabelError:
    mask: str          # path of the mask inside the set, "/"-separated
    mask_sha256: str   # `mask_digest` of the wrong mask (first 16 hex digits)
    reason: str


KNOWN_LABEL_ERRORS: dict[str, tuple[LabelError, ...]] = {
    "crackforest": (
        LabelError("groundTruth/042.mat", "1ad70e6ef78034fb",
                   "its mask is 065.mat's (same regions; seg/042.seg repeats 065.seg's data): it traces photo 065's "
                   "cracks, which photo 042 does not show"),
    ),
}


def mask_digest(mask: np.ndarray) -> str:
    """First 16 hex digits of the sha256 of a boolean mask's bits and shape (file headers and dates do not count)."""
    bits = np.packbits(np.asarray(mask, dtype=bool))
    return hashlib.sha256(f"{mask.shape}".encode() + bits.tobytes()).hexdigest()[:16]


def drop_label_errors(pairs: list[Pair], layout: str, mask_path: Callable[[Pair], str],
                      read_mask: Callable[[Pair], np.ndarray]) -> tuple[list[Pair], list[tuple[Pair, str]]]:
    """(kept pairs, [(left-out pair, reason)]) for the layout's known label errors; each one left out is logged."""
    errors = {error.mask: error for error in KNOWN_LABEL_ERRORS.get(layout, ())}
    if not errors:
        return pairs, []
    kept, dropped = [], []
    for pair in pairs:
        error = next((e for name, e in errors.items() if mask_path(pair).endswith(name)), None)
        if error is not None and mask_digest(read_mask(pair)) == error.mask_sha256:
            log.warning("left out %s: %s (known label error)", mask_path(pair), error.reason)
            dropped.append((pair, error.reason))
        else:
            kept.append(pair)
    return kept, dropped


def identical_masks(pairs: Iterable[Pair], read_mask: Callable[[Pair], np.ndarray]) -> list[list[Pair]]:
    """Groups of two or more pairs whose masks are identical (empty masks, i.e. crack-free photos, excepted)."""
    groups: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        mask = read_mask(pair)
        if mask.any():
            groups[mask_digest(mask)].append(pair)
    return [group for group in groups.values() if len(group) > 1]
