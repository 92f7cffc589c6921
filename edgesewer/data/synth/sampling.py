"""Which defects each synthetic image shows, its water level, and the train/val split.

Frequencies are long-tailed like Sewer-ML (FS, OB, OK, AF common; IS, PB, OS, OP, FO rare), but
every class keeps >= ~3% of the images so that 2000 images hold >= ~50 examples of each. About
half of the images are normal; a defective image has 1-3 labels, and some codes like to appear
together (roots and infiltration at displaced joints, obstacles on deposits). At most one side
connection per image.
"""

from __future__ import annotations

import numpy as np

from edgesewer.data.synth.catalog import CONNECTION_CODES, FLOOR_CODES
from edgesewer.taxonomy import SEWER_CODES

# Relative weight of each code among the labels of defective images.
CODE_WEIGHTS: dict[str, float] = {
    "RB": 8.0, "OB": 10.0, "PF": 5.0, "DE": 5.0, "FS": 11.0, "IS": 4.5, "RO": 6.0, "IN": 6.0, "AF": 9.5,
    "BE": 5.5, "FO": 4.3, "GR": 6.0, "PH": 5.2, "PB": 5.2, "OS": 5.2, "OP": 5.2, "OK": 10.0,
}
# P(k labels | defective), k = 1, 2, 3.
LABEL_COUNT_P = (0.55, 0.30, 0.15)
# Multipliers on a code's weight once another code is in the image (symmetric).
AFFINITY: dict[frozenset[str], float] = {
    frozenset({"FS", "RO"}): 3.0,
    frozenset({"FS", "IN"}): 2.5,
    frozenset({"RO", "IN"}): 2.0,
    frozenset({"RB", "OB"}): 2.0,
    frozenset({"RB", "IN"}): 1.8,
    frozenset({"DE", "RB"}): 2.0,
    frozenset({"AF", "FO"}): 2.0,
    frozenset({"BE", "IN"}): 1.5,
}
# Sewer-ML WaterLevel values (% of the pipe height) and how often they occur.
WATER_LEVELS = np.array([0, 2, 4, 5, 10, 20, 30, 40, 50])
WATER_P = np.array([0.30, 0.05, 0.05, 0.12, 0.18, 0.14, 0.09, 0.05, 0.02])
MAX_FLOOR_WATER = 10  # deposits and obstacles need a low flow to be seen

_WEIGHTS = np.array([CODE_WEIGHTS[c] for c in SEWER_CODES], np.float64)
_CONNECTION_MASK = np.array([c in CONNECTION_CODES for c in SEWER_CODES])


def _affinity_matrix() -> np.ndarray:
    m = np.ones((len(SEWER_CODES), len(SEWER_CODES)))
    for pair, factor in AFFINITY.items():
        a, b = (SEWER_CODES.index(c) for c in pair)
        m[a, b] = m[b, a] = factor
    return m


_AFFINITY = _affinity_matrix()


def sample_labels(n: int, rng: np.random.Generator, normal_fraction: float = 0.5) -> np.ndarray:
    """(n, 17) uint8 label matrix. Each class appears at least once when >= 17 rows are defective."""
    labels = np.zeros((n, len(SEWER_CODES)), np.uint8)
    defective = np.flatnonzero(rng.random(n) >= normal_fraction)
    # 17 random defective rows get one class each as their first label, so every class is present.
    forced_rows = rng.permutation(defective)[: len(SEWER_CODES)]
    forced_classes = rng.permutation(len(SEWER_CODES))[: len(forced_rows)]
    first_of = {int(r): int(k) for r, k in zip(forced_rows, forced_classes)}
    for row in defective:
        n_labels = int(rng.choice(3, p=LABEL_COUNT_P)) + 1
        chosen: list[int] = []
        first = first_of.get(int(row))
        while len(chosen) < n_labels:
            if first is not None and not chosen:
                k = first
            else:
                w = _WEIGHTS.copy()
                for c in chosen:
                    w *= _AFFINITY[c]
                w[chosen] = 0.0
                if _CONNECTION_MASK[chosen].any():
                    w[_CONNECTION_MASK] = 0.0
                k = int(rng.choice(len(w), p=w / w.sum()))
            chosen.append(k)
        labels[row, chosen] = 1
    return labels


def sample_water_levels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WaterLevel per row; low water where deposits or obstacles must be visible."""
    levels = rng.choice(WATER_LEVELS, size=len(labels), p=WATER_P)
    floor_cols = [SEWER_CODES.index(c) for c in FLOOR_CODES]
    has_floor = labels[:, floor_cols].any(axis=1)
    low = WATER_LEVELS[WATER_LEVELS <= MAX_FLOOR_WATER]
    low_p = WATER_P[WATER_LEVELS <= MAX_FLOOR_WATER]
    levels[has_floor] = rng.choice(low, size=int(has_floor.sum()), p=low_p / low_p.sum())
    return levels.astype(np.int64)


def split_validation(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation rows: exactly round(val_fraction * n) rows, each class ~val_fraction.

    Greedy multi-label stratification: defective rows are visited rarest label first and go where
    their rarest class is relatively further from its target share (ties go to training, so a
    class seen once is trained on); normal rows fill the rest at random.
    """
    n = len(labels)
    n_val = int(round(val_fraction * n))
    is_val = np.zeros(n, bool)
    if n_val == 0:
        return is_val
    counts = labels.sum(axis=0).astype(np.float64)
    want_val, want_train = val_fraction * counts, (1.0 - val_fraction) * counts
    have_val, have_train = np.zeros_like(counts), np.zeros_like(counts)
    rarity = np.where(labels > 0, counts[None, :], np.inf).min(axis=1)
    defective = np.flatnonzero(labels.any(axis=1))
    order = defective[np.lexsort((rng.random(len(defective)), rarity[defective]))]
    slots = n_val
    for row in order:
        cols = np.flatnonzero(labels[row])
        key = cols[np.argmin(counts[cols])]
        val_need = (want_val[key] - have_val[key]) / val_fraction
        train_need = (want_train[key] - have_train[key]) / (1.0 - val_fraction)
        if slots > 0 and val_need > train_need + 1e-9:
            is_val[row] = True
            have_val[cols] += 1
            slots -= 1
        else:
            have_train[cols] += 1
    rest = rng.permutation(np.flatnonzero(~is_val & ~labels.any(axis=1)))
    if slots > len(rest):  # too few normal rows: top up with unassigned defective rows
        rest = np.concatenate([rest, rng.permutation(np.flatnonzero(~is_val & labels.any(axis=1)))])
    is_val[rest[:slots]] = True
    return is_val
