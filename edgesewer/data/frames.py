"""Inspection videos with per-frame ground truth -> a Sewer-ML-format still set (CSV + PNG).

A frame classifier that is meant to run on the robot's video should also learn from video frames:
stills and footage differ (motion blur, defects growing out of the vanishing point, lighting along
the pipe). This writes every `stride`-th frame of each video as a Sewer-ML image labelled with the
codes in view in that frame, so `edgesewer train MODEL --data OUT` trains on footage unchanged.

Validation takes whole videos (the last `val_videos` of the sorted list), never frames of a
training video: neighbouring frames are near-duplicates, and a frame split would leak.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2

from edgesewer.data.video import _open, find_inspection_videos, read_inspection_gt
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER


@dataclass
class FrameSetSummary:
    out: Path
    train_images: int
    val_images: int
    train_videos: list[str]
    val_videos: list[str]


def _water_level(json_path: Path) -> int:
    """The video's water level (percent of the diameter), 0 when its JSON does not say."""
    value = json.loads(json_path.read_text()).get("water_level", 0)
    return int(value) if isinstance(value, (int, float)) else 0


def _rows_of_video(json_path: Path, image_dir: Path, stride: int, max_side: int | None,
                   advance) -> list[list]:
    """Write the sampled frames of one video; its CSV rows (Sewer-ML columns)."""
    gt = read_inspection_gt(json_path)
    level = _water_level(json_path)
    cap = _open(gt.video)
    rows: list[list] = []
    try:
        for index in range(gt.n_frames):
            ok, image = cap.read()
            if not ok:
                raise DataError(f"{gt.video}: ends at frame {index} but its JSON lists {gt.n_frames}")
            advance()
            if index % stride:
                continue
            if max_side and max(image.shape[:2]) > max_side:
                scale = max_side / max(image.shape[:2])
                size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            name = f"{gt.video.stem}_f{index:06d}.png"
            if not cv2.imwrite(str(image_dir / name), image):
                raise DataError(f"{image_dir / name}: could not write the frame")
            labels = [int(code in gt.frames[index]) for code in SEWER_CODES]
            defect = int(any(labels))
            va = int(level > 0)
            rows.append([name, level, va, *labels, int(not defect and not va), defect])
    finally:
        cap.release()
    return rows


def _write_csv(path: Path, rows: list[list]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SEWER_CSV_HEADER)
        writer.writerows(rows)


def extract_inspection_frames(root: str | Path, out: str | Path, stride: int = 2, val_videos: int = 1,
                              max_side: int | None = None, progress: bool = True) -> FrameSetSummary:
    """Write `out/images/*.png`, `out/SewerML_Train.csv` and `out/SewerML_Val.csv` from the videos under `root`."""
    from rich.progress import Progress

    if stride < 1:
        raise DataError(f"stride must be >= 1, got {stride}")
    jsons = find_inspection_videos(root)
    if not 0 <= val_videos < len(jsons):
        raise DataError(f"{root}: {len(jsons)} videos; --val-videos must leave at least one for training "
                        f"(got {val_videos})")
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    split_at = len(jsons) - val_videos
    train_rows: list[list] = []
    val_rows: list[list] = []
    total = sum(len(read_inspection_gt(p).frames) for p in jsons)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("video frames", total=total)
        for k, json_path in enumerate(jsons):
            rows = _rows_of_video(json_path, image_dir, stride, max_side, lambda: bar.advance(task))
            (train_rows if k < split_at else val_rows).extend(rows)
    _write_csv(out / "SewerML_Train.csv", train_rows)
    _write_csv(out / "SewerML_Val.csv", val_rows)
    return FrameSetSummary(out, len(train_rows), len(val_rows),
                           [p.stem for p in jsons[:split_at]], [p.stem for p in jsons[split_at:]])

