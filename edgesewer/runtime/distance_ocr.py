"""Read the distance counter that CCTV inspection cameras burn into the picture, with Tesseract.

Only a small strip of the frame is read: where the counter is drawn (by default where edgesewer's
synthetic videos draw it, top-left or bottom-left; `--ocr-roi` for other cameras). The strip is
upscaled and its thin strokes pulled out of the wall with a morphological filter, because the
counter is light text with a dark outline on a busy pipe wall, about 10 px high in a 320 px frame.

pytesseract and the `tesseract` binary are optional (the `ocr` extra, and `apt-get install
tesseract-ocr`); they are looked for only when OCR distance is asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from typing import Any, Sequence

import cv2
import numpy as np

from edgesewer.errors import EdgesewerError

# One text line (psm 7), only what a distance counter can contain, plus "$": Tesseract's English model
# reads the flat-topped 3 of OpenCV's Hershey font (the synthetic overlay's) as "$", and drops it when
# "$" is not allowed. No counter shows a "$", so it is read back as the 3 it is.
TESSERACT_CONFIG = "--psm 7 -c tessedit_char_whitelist=0123456789.m$"
DISTANCE_PATTERN = re.compile(r"(\d+[.,]\d{1,2})\s*m")
# The unit is the glyph Tesseract loses most ("m" read as "1", "11" or nothing); a number with the
# counter's two decimals is taken without it.
TWO_DECIMALS = re.compile(r"(\d+[.,]\d\d)")
UPSCALE = 4  # the counter is ~10 px high: Tesseract reads 30-40 px text far better
TOPHAT_PX = 9  # after upscaling: wider than the counter's bright strokes, narrower than the wall's patches

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels


def require_tesseract() -> Any:
    """The pytesseract module, or a one-line error saying what to install."""
    try:
        import pytesseract
    except ImportError:
        raise EdgesewerError(
            "--distance ocr needs pytesseract: pip install 'edgesewer[ocr]' (and apt-get install tesseract-ocr)"
        ) from None
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise EdgesewerError(
            f"--distance ocr needs the tesseract program ({pytesseract.pytesseract.tesseract_cmd!r} is not on PATH): "
            "apt-get install tesseract-ocr"
        )
    return pytesseract


def parse_distance(text: str) -> float | None:
    """'  23.11 m' -> 23.11; '2,5 m' -> 2.5; '$1.36 1' -> 31.36; None without 'N.N m' or 'N.NN'."""
    text = text.replace("$", "3")
    match = DISTANCE_PATTERN.search(text) or TWO_DECIMALS.search(text)
    return float(match.group(1).replace(",", ".")) if match else None


def synthetic_counter_boxes(height: int, width: int) -> list[Box]:
    """Where edgesewer's synthetic videos draw the counter (`data/synth/overlay.py`): top-left, bottom-left.

    The same layout arithmetic as the generator; the box spans a counter of up to 999.99 m.
    """
    scale = max(0.3, width / 900.0)
    thick = max(1, int(round(width / 500)))
    line_h = int(30 * scale) + 4
    (text_w, text_h), base = cv2.getTextSize("000.00 m", cv2.FONT_HERSHEY_SIMPLEX, scale, thick + 2)
    x0, x1 = max(0, int(0.03 * width) - 3), min(width, int(0.03 * width) + text_w + 4)
    top = (x0, max(0, line_h - text_h - 4), x1, min(height, line_h + base + 3))
    bottom = (x0, max(0, height - 6 - text_h - 4), x1, min(height, height - 6 + base + 3))
    return [top, bottom]


def parse_roi(spec: str) -> tuple[float, float, float, float]:
    """`--ocr-roi X0,Y0,X1,Y1` as fractions of the frame, e.g. 0,0.9,0.4,1 for a bottom-left strip."""
    try:
        x0, y0, x1, y1 = (float(v) for v in spec.split(","))
    except ValueError:
        raise EdgesewerError(f"--ocr-roi {spec!r}: give four fractions X0,Y0,X1,Y1, e.g. 0,0.9,0.4,1") from None
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise EdgesewerError(f"--ocr-roi {spec!r}: need 0 <= X0 < X1 <= 1 and 0 <= Y0 < Y1 <= 1")
    return x0, y0, x1, y1


def prepare_strip(crop_bgr: np.ndarray, outline: bool = False) -> np.ndarray:
    """Counter strip -> dark text on white, upscaled: what Tesseract reads best.

    A top-hat keeps strokes narrower than TOPHAT_PX that are brighter than their surroundings (the
    text's light core) and flattens the wall. With `outline`, a black-hat keeps the dark outline
    instead: the fallback for a wall as bright as the letters, where the light core vanishes. The
    contrast stretch ignores the strongest 2 % so that one glint does not wash the text out.
    """
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    big = cv2.resize(gray, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_PX, TOPHAT_PX))
    strokes = cv2.morphologyEx(big, cv2.MORPH_BLACKHAT if outline else cv2.MORPH_TOPHAT, kernel).astype(np.float32)
    high = max(1.0, float(np.percentile(strokes, 98)))
    text = 255 - np.clip(strokes * (255.0 / high), 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(text, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=255)


class CounterOcr:
    """One Tesseract read of the counter in a frame: `read(image) -> metres | None`.

    Each box is read from its light core, then (only when that gives no number) from its dark outline,
    starting with the box that read last. Once the caller has confirmed the reads (`settled`), only
    that box is read (a camera's overlay does not move): one Tesseract call, two when it is illegible.
    """

    def __init__(self, roi: Sequence[float] | None = None) -> None:
        self._tesseract = require_tesseract()
        # Tesseract's OpenMP threads cost more than they save on one short line (143 -> 102 ms per call on
        # two busy cores). Meant for the tesseract child processes; a library in this process that reads
        # it has read it when it started (the user's own setting, if any, is kept).
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self.roi = tuple(roi) if roi is not None else None
        self._preferred = 0  # the box that read last
        self.settled = False
        self._lock = threading.Lock()  # the counters below are read from another thread
        self.calls = 0
        self.seconds = 0.0

    def boxes(self, height: int, width: int) -> list[Box]:
        if self.roi is None:
            return synthetic_counter_boxes(height, width)
        x0, y0, x1, y1 = self.roi
        return [(int(x0 * width), int(y0 * height), max(int(x1 * width), 1), max(int(y1 * height), 1))]

    def read_box(self, image: np.ndarray, box: Box, outline: bool = False) -> float | None:
        x0, y0, x1, y1 = box
        strip = prepare_strip(image[y0:y1, x0:x1], outline)
        t0 = time.perf_counter()
        text = self._tesseract.image_to_string(strip, config=TESSERACT_CONFIG)
        with self._lock:
            self.calls += 1
            self.seconds += time.perf_counter() - t0
        return parse_distance(text)

    def read(self, image: np.ndarray) -> float | None:
        boxes = self.boxes(*image.shape[:2])
        preferred = min(self._preferred, len(boxes) - 1)
        order = [preferred] + ([] if self.settled else [i for i in range(len(boxes)) if i != preferred])
        for i in order:
            for outline in (False, True):
                value = self.read_box(image, boxes[i], outline)
                if value is not None:
                    self._preferred = i
                    return value
        return None

    @property
    def ms_per_call(self) -> float | None:
        with self._lock:
            return 1000.0 * self.seconds / self.calls if self.calls else None
