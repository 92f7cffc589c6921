"""Raw network outputs -> decisions: sigmoid, per-class thresholds, temporal smoothing, crack measures.

Everything here is plain numpy/OpenCV and works frame by frame, so the same code serves files,
live streams and tests with hand-computed numbers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from edgesewer.errors import DataError


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warnings for large negative logits)."""
    x = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x)).astype(np.float32)


def parse_thresholds(spec: str | None, classes: Sequence[str], defaults: np.ndarray) -> np.ndarray:
    """Per-class thresholds: the sidecar's `defaults`, overridden by a CLI spec.

    `"0.4"` sets every class; `"RB=0.3,OB=0.6"` sets those classes; `"0.5,RB=0.3"` does both
    (left to right). Values must lie in (0, 1).
    """
    thresholds = np.asarray(defaults, dtype=np.float32).copy()
    if spec is None or not str(spec).strip():
        return thresholds
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            continue
        code, _, value_text = item.rpartition("=")
        try:
            value = float(value_text)
        except ValueError:
            raise DataError(f"--threshold {spec!r}: {value_text!r} is not a number") from None
        if not 0.0 < value < 1.0:
            raise DataError(f"--threshold {spec!r}: {value} is outside (0, 1)")
        if not code:
            thresholds[:] = value
        elif code in classes:
            thresholds[list(classes).index(code)] = value
        else:
            raise DataError(f"--threshold {spec!r}: unknown class {code!r}; valid: {' '.join(classes)}")
    return thresholds


@dataclass(frozen=True)
class SmoothingSpec:
    """`none`, `ema:ALPHA` (score EMA, weight ALPHA on the newest frame) or `kofn:K/N` (on in K of N frames)."""

    mode: str = "none"
    alpha: float = 0.5
    k: int = 1
    n: int = 1

    def __str__(self) -> str:
        return {"none": "none", "ema": f"ema:{self.alpha:g}", "kofn": f"kofn:{self.k}/{self.n}"}[self.mode]


def parse_smoothing(spec: str | None) -> SmoothingSpec:
    """Parse `--smooth`: `none`, `ema`, `ema:0.3`, `kofn:3/5`."""
    text = (spec or "none").strip().lower()
    mode, _, arg = text.partition(":")
    if mode == "none" and not arg:
        return SmoothingSpec()
    if mode == "ema":
        try:
            alpha = float(arg) if arg else 0.5
        except ValueError:
            alpha = -1.0
        if not 0.0 < alpha <= 1.0:
            raise DataError(f"--smooth {spec!r}: ema takes a weight in (0, 1], e.g. ema:0.3")
        return SmoothingSpec("ema", alpha=alpha)
    if mode == "kofn":
        k_text, _, n_text = arg.partition("/")
        if not (k_text.isdigit() and n_text.isdigit()) or not 1 <= int(k_text) <= int(n_text):
            raise DataError(f"--smooth {spec!r}: kofn takes K/N with 1 <= K <= N, e.g. kofn:3/5")
        return SmoothingSpec("kofn", k=int(k_text), n=int(n_text))
    raise DataError(f"--smooth {spec!r}: use none, ema[:ALPHA] or kofn:K/N")


class TemporalSmoother:
    """Turns per-frame probabilities into stable per-frame decisions.

    ema: score_t = alpha * p_t + (1 - alpha) * score_{t-1} (score_0 = p_0); on when score >= threshold.
    kofn: on when p >= threshold in at least K of the last N frames; the score is the newest p.
    """

    def __init__(self, spec: SmoothingSpec, thresholds: np.ndarray) -> None:
        self.spec = spec
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self._ema: np.ndarray | None = None
        self._hits: deque[np.ndarray] = deque(maxlen=max(1, spec.n))

    def reset(self) -> None:
        self._ema = None
        self._hits.clear()

    def update(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, active) for one frame's probabilities."""
        probs = np.asarray(probs, dtype=np.float32)
        if self.spec.mode == "ema":
            a = self.spec.alpha
            self._ema = probs.copy() if self._ema is None else a * probs + (1.0 - a) * self._ema
            return self._ema.copy(), self._ema >= self.thresholds
        if self.spec.mode == "kofn":
            self._hits.append(probs >= self.thresholds)
            return probs, np.sum(self._hits, axis=0) >= self.spec.k
        return probs, probs >= self.thresholds


@dataclass
class CrackResult:
    """One frame's crack measurements, in frame pixels (the mask stays at the network's resolution)."""

    mask: np.ndarray  # uint8 {0, 1} at probability-map resolution, small components removed
    area_px: float
    area_fraction: float
    length_px: float
    components: int
    peak_prob: float

    @property
    def found(self) -> bool:
        return self.components > 0


# Neighbour weights for a one-byte neighbourhood code: P2 (north) = 1, then clockwise to P9 (north-west) = 128.
_NEIGHBOUR_CODE = np.array([[128, 1, 2], [64, 0, 4], [32, 16, 8]], dtype=np.float32)


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 neighbourhoods: may the centre pixel go in sub-step 1 / sub-step 2?"""
    tables = np.zeros((2, 256), dtype=bool)
    for code in range(256):
        n = [(code >> i) & 1 for i in range(8)]  # P2..P9
        count = sum(n)
        transitions = sum(1 for i in range(8) if n[i] == 0 and n[(i + 1) % 8] == 1)
        if not (2 <= count <= 6 and transitions == 1):
            continue
        tables[0, code] = n[0] * n[2] * n[4] == 0 and n[2] * n[4] * n[6] == 0
        tables[1, code] = n[0] * n[2] * n[6] == 0 and n[0] * n[4] * n[6] == 0
    return tables[0], tables[1]


_THIN_STEPS = _thinning_tables()
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9 as (dy, dx)


def _ring_components(n: list[int]) -> int:
    """Number of 8-connected groups among the set neighbours of a pixel."""
    left = {i for i in range(8) if n[i]}
    groups = 0
    while left:
        groups += 1
        stack = [left.pop()]
        while stack:
            i = stack.pop()
            near = {j for j in left if max(abs(_RING[i][0] - _RING[j][0]), abs(_RING[i][1] - _RING[j][1])) == 1}
            left -= near
            stack.extend(near)
    return groups


def _staircase_tables() -> list[np.ndarray]:
    """Per corner orientation (N+E, E+S, S+W, W+N): is the pixel a removable staircase corner?

    Zhang-Suen can leave 4-connected staircases on slanted lines, which a link count would measure
    as 2 instead of sqrt(2) per step. A corner pixel whose two orthogonal neighbours touch each other
    diagonally, and whose neighbours stay one connected group, can go without breaking the line.
    """
    tables = []
    for a, b in ((0, 2), (2, 4), (4, 6), (6, 0)):
        table = np.zeros(256, dtype=bool)
        for code in range(256):
            n = [(code >> i) & 1 for i in range(8)]
            table[code] = bool(n[a] and n[b] and not n[(a + 1) % 8] and _ring_components(n) == 1)
        tables.append(table)
    return tables


_STAIRCASE = _staircase_tables()


def zhang_suen_thinning(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide, 8-connected skeleton of a binary mask (Zhang & Suen 1984, then staircase pruning).

    OpenCV's own thinning lives in the contrib build only, which a Jetson install usually lacks.
    Each sub-step encodes every pixel's 8 neighbours as one byte with a filter2D and looks the
    decision up in a 256-entry table; only the bounding box of the mask is processed.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    out = np.zeros_like(binary)
    ys, xs = np.nonzero(binary)
    if len(ys) == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    img = binary[y0:y1, x0:x1].copy()
    while True:
        changed = False
        for table in _THIN_STEPS:
            code = cv2.filter2D(img, -1, _NEIGHBOUR_CODE, borderType=cv2.BORDER_CONSTANT)
            remove = table[code] & (img == 1)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            break
    for table in _STAIRCASE:  # one orientation at a time, so two touching corners never both go
        code = cv2.filter2D(img, -1, _NEIGHBOUR_CODE, borderType=cv2.BORDER_CONSTANT)
        img[table[code] & (img == 1)] = 0
    out[y0:y1, x0:x1] = img
    return out


def skeleton_length(skeleton: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> float:
    """Length of an 8-connected skeleton: horizontal steps count sx, vertical sy, diagonal hypot(sx, sy).

    (sx, sy) is the size of one skeleton pixel in output pixels. A diagonal step is skipped where an
    orthogonal path joins the same two pixels (an L corner), so corners are not counted twice.
    """
    s = np.asarray(skeleton) > 0
    horizontal = np.count_nonzero(s[:, :-1] & s[:, 1:])
    vertical = np.count_nonzero(s[:-1, :] & s[1:, :])
    down_right = s[:-1, :-1] & s[1:, 1:] & ~s[:-1, 1:] & ~s[1:, :-1]
    down_left = s[:-1, 1:] & s[1:, :-1] & ~s[:-1, :-1] & ~s[1:, 1:]
    diagonal = np.count_nonzero(down_right) + np.count_nonzero(down_left)
    return float(horizontal * sx + vertical * sy + math.hypot(sx, sy) * diagonal)


def crack_length(mask: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> float:
    """Skeleton length plus, at each free end, the distance to the mask border that thinning ate away.

    Thinning shortens a crack by about half its width at each end; the distance transform at an
    end pixel measures that half-width. An isolated skeleton pixel (a blob) gets both ends.
    """
    skeleton = zhang_suen_thinning(mask)
    if not skeleton.any():
        return 0.0
    neighbours = cv2.filter2D(skeleton, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT) - skeleton
    # Padded with background so that a mask touching (or filling) the frame still has a border.
    padded = np.pad((np.asarray(mask) > 0).astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ends = (skeleton == 1) & (neighbours == 1)
    points = (skeleton == 1) & (neighbours == 0)
    extension = float(distance[ends].sum() + 2.0 * distance[points].sum())
    return skeleton_length(skeleton, sx, sy) + extension * math.sqrt(sx * sy)


def measure_cracks(
    prob: np.ndarray, frame_hw: tuple[int, int] | None = None, threshold: float = 0.5, min_area_px: float = 0.0
) -> CrackResult:
    """Threshold a crack probability map, drop specks, measure area and length.

    Args:
        prob: (h, w) probabilities (a (1, 1, h, w) network output is squeezed).
        frame_hw: the frame the map covers; area and length are scaled to its pixels.
        threshold: a pixel is crack when prob > threshold (strict, as the crack metrics use).
        min_area_px: connected components smaller than this (in frame pixels) are dropped.
    """
    prob = np.asarray(prob, dtype=np.float32).reshape(np.asarray(prob).shape[-2:])
    h, w = prob.shape
    fh, fw = frame_hw or (h, w)
    sy, sx = fh / h, fw / w
    binary = (prob > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] * sy * sx >= min_area_px
    mask = keep[labels].astype(np.uint8)
    area = float(np.count_nonzero(mask)) * sy * sx
    length = crack_length(mask, sx, sy) if area else 0.0
    peak = float(prob[mask > 0].max()) if area else 0.0
    return CrackResult(mask, area, area / float(fh * fw), length, int(keep.sum()), peak)


@dataclass
class FrameResult:
    """Everything the sinks need about one processed frame."""

    index: int
    time: float
    image: np.ndarray  # BGR as captured; sinks never modify it (snapshots keep a reference)
    classes: tuple[str, ...] = ()
    probs: np.ndarray | None = None  # raw sigmoid outputs
    scores: np.ndarray | None = None  # after temporal smoothing
    active: np.ndarray | None = None  # bool per class, after thresholds and smoothing
    crack: CrackResult | None = None
    cam: np.ndarray | None = None  # [C, h, w] class activation maps when the model has them
    extra: dict = field(default_factory=dict)
    distance_m: float | None = None  # along the pipe, see runtime/distance.py; None when unknown
    distance_source: str | None = None  # "telemetry" | "ocr"

    @property
    def codes(self) -> list[str]:
        if self.active is None:
            return []
        return [c for c, on in zip(self.classes, self.active) if on]

    @property
    def has_detection(self) -> bool:
        return bool(self.codes) or (self.crack is not None and self.crack.found)
