"""Inspection videos with per-frame ground truth -> a Sewer-ML-format still set (CSV + PNG).

A frame classifier that is meant to run on the robot's video should also learn from video frames:
stills and footage differ (motion blur, defects growing out of the vanishing point, lighting along
the pipe). This writes every `stride`-th frame of each video as a Sewer-ML image labelled with the
codes in view in that frame, so `edgesewer train MODEL --data OUT` trains on footage unchanged.

Validation takes whole videos (the last `val_videos` of the sorted list), never frames of a
training video: neighbouring frames are near-duplicates, and a frame split would leak.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgesewer.data.sewerml import write_labels_csv
from edgesewer.data.video import InspectionGT, _open, find_inspection_videos, read_inspection_gt, shrink_to
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES


MANIFEST = "video_frames.json"  # marks a folder as this writer's (as synth.json does for `data synth`)


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


@dataclass
class _Rows:
    """CSV rows of a split: file names, (N, 17) labels, water levels."""

    names: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)

    def write(self, path: Path) -> None:
        write_labels_csv(path, self.names, np.array(self.labels, dtype=np.uint8).reshape(-1, len(SEWER_CODES)),
                         self.levels)


def _add_video(rows: _Rows, gt: InspectionGT, level: int, image_dir: Path, stride: int, max_side: int | None,
               advance) -> None:
    """Write the sampled frames of one video as PNGs and add their rows."""
    cap = _open(gt.video)
    try:
        for index in range(gt.n_frames):
            ok, image = cap.read()
            if not ok:
                raise DataError(f"{gt.video}: ends at frame {index} but its JSON lists {gt.n_frames}")
            advance()
            if index % stride:
                continue
            image = shrink_to(image, max_side)
            name = f"{gt.video.stem}_f{index:06d}.png"
            if not cv2.imwrite(str(image_dir / name), image):
                raise DataError(f"{image_dir / name}: could not write the frame")
            rows.names.append(name)
            rows.labels.append([int(code in gt.frames[index]) for code in SEWER_CODES])
            rows.levels.append(level)
    finally:
        cap.release()


def _prepare(out: Path, manifest: dict) -> Path:
    """Claim `out` (refusing a Sewer-ML folder somebody else wrote), clear our earlier images; the images folder."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    theirs = sorted(p.name for p in (*out.glob("SewerML_*.csv"), out / "images") if p.exists())
    if theirs and not (out / MANIFEST).is_file():
        raise DataError(f"{out}: already holds {', '.join(theirs)} not written by `edgesewer video frames`; "
                        "choose an empty --out folder")
    if (out / "images").is_dir():
        shutil.rmtree(out / "images")  # ours, from an earlier run: stale frames must not linger
    (out / "images").mkdir(parents=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # first, so a half-written folder is ours too
    return out / "images"


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
    image_dir = _prepare(out, {"written_by": "edgesewer video frames", "data": str(root), "stride": stride,
                               "val_videos": val_videos, "max_side": max_side})
    split_at = len(jsons) - val_videos
    train_rows, val_rows = _Rows(), _Rows()
    videos = [(read_inspection_gt(p), _water_level(p)) for p in jsons]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("video frames", total=sum(gt.n_frames for gt, _ in videos))
        for k, (gt, level) in enumerate(videos):
            _add_video(train_rows if k < split_at else val_rows, gt, level, image_dir, stride, max_side,
                       lambda: bar.advance(task))
    train_rows.write(out / "SewerML_Train.csv")
    val_rows.write(out / "SewerML_Val.csv")
    return FrameSetSummary(out, len(train_rows.names), len(val_rows.names),
                           [p.stem for p in jsons[:split_at]], [p.stem for p in jsons[split_at:]])

