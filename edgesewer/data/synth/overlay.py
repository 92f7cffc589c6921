"""CCTV-style text burnt into inspection frames: distance counter, date, manhole ids.

Real Sewer-ML frames carry this text; a classifier must learn to ignore it, so it is drawn on
normal and defective frames alike and never depends on the labels.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np

METRES_PER_RADIUS = 0.15  # a DN300 pipe: what the distance counter converts camera travel with

_COLORS = ((255, 255, 255), (80, 240, 255), (255, 255, 180))  # white, yellow, pale cyan (BGR)


@dataclass(frozen=True)
class OverlayStyle:
    """Everything about the text that stays fixed during one inspection."""

    date: str
    section: str  # e.g. "MH1042 > MH1043"
    color: tuple[int, int, int]
    top: bool  # text block at the top or at the bottom of the frame
    start_m: float  # distance counter at camera position 0


def sample_overlay(rng: np.random.Generator) -> OverlayStyle:
    day = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4000)))
    first = int(rng.integers(100, 9900))
    return OverlayStyle(
        date=day.strftime("%d.%m.%Y") if rng.random() < 0.5 else day.isoformat(),
        section=f"MH{first:04d} > MH{first + 1:04d}",
        color=_COLORS[int(rng.integers(0, len(_COLORS)))],
        top=bool(rng.random() < 0.6),
        start_m=float(rng.uniform(0.0, 60.0)),
    )


def distance_text(style: OverlayStyle, cam_pos: float) -> str:
    """The distance counter as drawn, e.g. ' 23.11' (metres, two decimals; the video truth records it too)."""
    return f"{style.start_m + cam_pos * METRES_PER_RADIUS:6.2f}"


def draw_overlay(image: np.ndarray, style: OverlayStyle, cam_pos: float) -> None:
    """Write the distance (metres), date and section onto `image` in place."""
    h, w = image.shape[:2]
    scale = max(0.3, w / 900.0)
    thick = max(1, int(round(w / 500)))
    metres = distance_text(style, cam_pos)
    lines = [f"{metres} m", style.date] if style.top else [style.section, f"{metres} m  {style.date}"]
    line_h = int(30 * scale) + 4
    y0 = line_h if style.top else h - 6 - line_h * (len(lines) - 1)
    for i, text in enumerate(lines):
        org = (int(0.03 * w), y0 + i * line_h)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, style.color, thick, cv2.LINE_AA)
