"""Annotate frames: active codes with scores and meanings, crack mask tint, MA-Q2L CAM regions, the
latest clip-level (super-image) prediction, and a status bar that names pipeline FPS and network FPS
separately.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgesewer.runtime.postprocess import FrameResult
from edgesewer.taxonomy import CIW, SEWER_DESCRIPTIONS

CRACK_BGR = (0, 0, 255)
CLIP_BGR = (255, 200, 120)  # light blue: a verdict on the last seconds, not on this frame
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def severity_colour(severity: float) -> tuple[int, int, int]:
    """Red for severe (CIW x score > 0.5), orange for medium (> 0.2), yellow otherwise (BGR)."""
    if severity > 0.5:
        return (40, 40, 255)
    if severity > 0.2:
        return (0, 150, 255)
    return (0, 230, 255)


class Overlay:
    """Draws on a copy of the frame; buffers that depend on the frame size are made once per size."""

    def __init__(self, alpha: float = 0.45, max_labels: int = 6, show_cam: bool = True) -> None:
        self.alpha = alpha
        self.max_labels = max_labels
        self.show_cam = show_cam
        self._size: tuple[int, int] | None = None
        self._mask: np.ndarray | None = None

    def _buffers(self, height: int, width: int) -> np.ndarray:
        if self._size != (height, width):
            self._size = (height, width)
            self._mask = np.empty((height, width), dtype=np.uint8)
        return self._mask  # type: ignore[return-value]

    def draw(self, result: FrameResult, status: str | None = None) -> np.ndarray:
        frame = result.image
        height, width = frame.shape[:2]
        out = frame.copy()
        scale = max(0.35, 0.6 * min(height / 720.0, width / 1280.0))
        if result.crack is not None and result.crack.found:
            mask = self._buffers(height, width)
            cv2.resize(result.crack.mask, (width, height), dst=mask, interpolation=cv2.INTER_NEAREST)
            tinted = out.copy()
            tinted[mask > 0] = CRACK_BGR
            cv2.addWeighted(tinted, self.alpha, out, 1.0 - self.alpha, 0.0, dst=out)
        if self.show_cam and result.cam is not None and result.codes:
            out = self._draw_cam(out, result)
        self._draw_labels(out, result, scale)
        if status:
            self._draw_status(out, f"{result.time:.1f} s | {status}", scale)
        return out

    def _draw_cam(self, out: np.ndarray, result: FrameResult) -> np.ndarray:
        from edgesewer.runtime.heatmaps import cam_regions, draw_cam_overlay

        active = [i for i, on in enumerate(result.active) if on]
        regions = cam_regions(result.cam, out.shape[:2], classes=result.classes, class_indices=active)
        return draw_cam_overlay(out, regions, classes=result.classes)

    def _draw_labels(self, out: np.ndarray, result: FrameResult, scale: float) -> None:
        lines: list[tuple[str, tuple[int, int, int]]] = []
        if result.active is not None:
            order = np.argsort(-np.asarray(result.scores))
            for i in order:
                if result.active[i] and len(lines) < self.max_labels:
                    code = result.classes[i]
                    score = float(result.scores[i])
                    text = f"{code} {score:.2f} {SEWER_DESCRIPTIONS.get(code, '')}".rstrip()
                    lines.append((text, severity_colour(CIW.get(code, 0.0) * score)))
        if result.crack is not None and result.crack.found:
            crack = result.crack
            lines.append((f"crack: area {crack.area_px:.0f} px, length {crack.length_px:.0f} px", CRACK_BGR))
        if not lines and result.active is not None:
            lines.append(("no defect", (80, 220, 80)))
        if result.extra.get("clip"):  # set by the pipeline in clip mode: the latest window's verdict
            lines.append((str(result.extra["clip"]), CLIP_BGR))
        if not lines:
            return
        line_h = int(28 * scale / 0.6)
        box_w = max(cv2.getTextSize(t, _FONT, scale, 1)[0][0] for t, _ in lines) + 16
        box_h = line_h * len(lines) + 8
        roi = out[0 : min(box_h, out.shape[0]), 0 : min(box_w, out.shape[1])]
        roi[:] = (roi * 0.4).astype(np.uint8)  # darken behind the text so it reads on any footage
        for k, (text, colour) in enumerate(lines):
            cv2.putText(out, text, (8, line_h * (k + 1) - 4), _FONT, scale, colour, 1, cv2.LINE_AA)

    def _draw_status(self, out: np.ndarray, text: str, scale: float) -> None:
        bar_h = int(26 * scale / 0.6)
        height = out.shape[0]
        bar = out[height - bar_h : height]
        bar[:] = (bar * 0.3).astype(np.uint8)
        cv2.putText(out, text, (8, height - bar_h // 4 - 2), _FONT, scale * 0.85, (255, 255, 255), 1, cv2.LINE_AA)
