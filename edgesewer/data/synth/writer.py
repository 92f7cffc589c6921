"""Write the synthetic set: Sewer-ML CSVs + PNGs, DeepCrack-style crack patches, inspection videos.

Layout under `out` (other modules rely on it):
    sewerml/SewerML_Train.csv, sewerml/SewerML_Val.csv, sewerml/images/00000001.png ...
    crack/train_img/*.jpg, crack/train_lab/*.png, crack/test_img/*.jpg, crack/test_lab/*.png
    videos/inspection_000.mp4, inspection_000.json, inspection_000_masks/000123.png ...
    synth.json   (what was generated, with which settings; marks the folder as ours)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgesewer.data.sewerml import write_labels_csv
from edgesewer.data.synth.cracks import render_crack_patch
from edgesewer.data.synth.sampling import sample_labels, sample_water_levels, split_validation
from edgesewer.data.synth.still import render_sample
from edgesewer.data.synth.video import render_video
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES

MANIFEST = "synth.json"
_OWNED = ("sewerml", "crack", "videos")
CRACK_TEST_FRACTION = 0.2
CRACK_NEGATIVE_FRACTION = 0.08  # patches without a crack, so "always predict a crack" is wrong


@dataclass
class SynthSummary:
    """What `generate` wrote."""

    out: Path
    train_csv: Path | None = None
    val_csv: Path | None = None
    images_dir: Path | None = None
    crack_dir: Path | None = None
    videos: list[Path] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> images/normal/<code> -> n
    crack_counts: dict[str, int] = field(default_factory=dict)  # train/test -> n
    seconds: float = 0.0
    images_per_second: float = 0.0

    def to_json(self) -> dict:
        """JSON-ready dict: paths as strings."""
        data = asdict(self)
        data["videos"] = [str(p) for p in self.videos]
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def generate(out: str | Path, *, images: int = 2000, videos: int = 2, seed: int = 0,
             size: tuple[int, int] = (320, 256), val_fraction: float = 0.2, crack_images: int = 200,
             crack_size: tuple[int, int] = (256, 256), video_seconds: float = 20.0, fps: int = 25,
             workers: int = 1, progress: bool = True) -> SynthSummary:
    """Generate the whole synthetic set under `out`; deterministic for a given seed and settings.

    `workers` > 1 renders the images, and the videos, in that many processes (same bytes as one process). Speed:
    ~20 ms CPU per 320x256 image with its PNG (~50 images/s per core), see `edgesewer.data.synth`.
    """
    _check_settings(images, videos, size, val_fraction, crack_images, crack_size, video_seconds, fps, workers)
    root = Path(out)
    _prepare(root)
    summary = SynthSummary(out=root)
    start = time.perf_counter()
    with _progress(progress) as bar:
        if images > 0:
            t0 = time.perf_counter()
            _write_sewerml(root / "sewerml", images, seed, size, val_fraction, workers, bar, summary)
            summary.images_per_second = round(images / max(time.perf_counter() - t0, 1e-9), 1)
        if crack_images > 0:
            _write_cracks(root / "crack", crack_images, seed, crack_size, bar, summary)
        if videos > 0:
            _write_videos(root / "videos", videos, seed, size, video_seconds, fps, workers, bar, summary)
    summary.seconds = round(time.perf_counter() - start, 2)
    settings = {"images": images, "videos": videos, "seed": seed, "size": list(size), "val_fraction": val_fraction,
                "crack_images": crack_images, "crack_size": list(crack_size), "video_seconds": video_seconds,
                "fps": fps}
    (root / MANIFEST).write_text(json.dumps({"settings": settings, "summary": summary.to_json()}, indent=2) + "\n")
    return summary


def _check_settings(images, videos, size, val_fraction, crack_images, crack_size, video_seconds, fps, workers) -> None:
    for name, value in (("images", images), ("videos", videos), ("crack images", crack_images)):
        if value < 0:
            raise DataError(f"number of {name} must be >= 0, got {value}")
    for name, (w, h) in (("size", size), ("crack size", crack_size)):
        if not (32 <= w <= 4096 and 32 <= h <= 4096):
            raise DataError(f"{name} {w}x{h} is out of range: width and height must be 32..4096")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val fraction must be in [0, 1), got {val_fraction}")
    if videos > 0 and not (1 <= fps <= 120 and 0 < video_seconds <= 3600):
        raise DataError(f"video settings out of range: fps {fps} (1..120), seconds {video_seconds} (0..3600]")
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")


def _prepare(root: Path) -> None:
    """Create `root`; clear our own sub-folders from an earlier run, never anybody else's files."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    ours = (root / MANIFEST).is_file()
    for name in _OWNED:
        sub = root / name
        if sub.exists():
            if not ours:
                raise DataError(f"{sub}: already exists and was not written by `edgesewer data synth`; "
                                f"choose an empty --out folder")
            shutil.rmtree(sub)
    root.mkdir(parents=True, exist_ok=True)


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   disable=not enabled, transient=False)
    with bar:
        yield bar


def _render_image_job(job: tuple[int, tuple[str, ...], int, int, tuple[int, int], str]) -> int:
    index, codes, level, seed, size, path = job
    frame = render_sample(codes, seed=seed, index=index, size=size, water_level=level)
    if not cv2.imwrite(path, frame.image):
        raise DataError(f"{path}: could not write the PNG (disk full or read-only?)")
    return index


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _write_sewerml(folder: Path, n: int, seed: int, size, val_fraction: float, workers: int, bar: Progress,
                   summary: SynthSummary) -> None:
    rng = np.random.default_rng([seed, 0x5E3E])
    labels = sample_labels(n, rng)
    levels = sample_water_levels(labels, rng)
    is_val = split_validation(labels, val_fraction, rng)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    names = [f"{i + 1:08d}.png" for i in range(n)]
    jobs = [(i + 1, tuple(c for c, on in zip(SEWER_CODES, labels[i]) if on), int(levels[i]), seed, tuple(size),
             str(images_dir / names[i])) for i in range(n)]
    task = bar.add_task("sewer-ml images", total=n)
    if workers == 1:
        for job in jobs:
            _render_image_job(job)
            bar.advance(task)
    else:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with OpenCV/torch threads in the parent
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_render_image_job, jobs, chunksize=16):
                bar.advance(task)
    summary.images_dir = images_dir
    summary.train_csv = folder / "SewerML_Train.csv"
    summary.val_csv = folder / "SewerML_Val.csv"
    for split, csv_path, rows in (("train", summary.train_csv, ~is_val), ("val", summary.val_csv, is_val)):
        write_labels_csv(csv_path, [names[i] for i in np.flatnonzero(rows)], labels[rows], levels[rows])
        split_labels = labels[rows]
        counts = {"images": int(rows.sum()), "normal": int((~split_labels.any(axis=1)).sum())}
        counts.update({c: int(v) for c, v in zip(SEWER_CODES, split_labels.sum(axis=0))})
        summary.counts[split] = counts


def _write_cracks(folder: Path, n: int, seed: int, size, bar: Progress, summary: SynthSummary) -> None:
    n_test = int(round(CRACK_TEST_FRACTION * n)) if n > 1 else 0
    for sub in ("train_img", "train_lab", "test_img", "test_lab"):
        (folder / sub).mkdir(parents=True)
    task = bar.add_task("crack patches", total=n)
    for i in range(n):
        rng = np.random.default_rng([seed, 0xC4AC, i])
        image, mask = render_crack_patch(rng, tuple(size), with_crack=rng.random() >= CRACK_NEGATIVE_FRACTION)
        split = "test" if i >= n - n_test else "train"
        stem = f"{i + 1:05d}"
        ok = cv2.imwrite(str(folder / f"{split}_img" / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        ok &= cv2.imwrite(str(folder / f"{split}_lab" / f"{stem}.png"), mask)
        if not ok:
            raise DataError(f"{folder}: could not write crack patch {stem}")
        bar.advance(task)
    summary.crack_dir = folder
    summary.crack_counts = {"train": n - n_test, "test": n_test}


def _render_video_job(job: tuple) -> Path:
    folder, name, seed, seconds, fps, size, codes = job
    return render_video(folder, name, seed, seconds, fps, size, codes).mp4


def _write_videos(folder: Path, n: int, seed: int, size, seconds: float, fps: int, workers: int, bar: Progress,
                  summary: SynthSummary) -> None:
    folder.mkdir(parents=True)
    # One shuffled list of the 17 codes, rotated per video, so the videos show different defects;
    # RB first, so that the first video always has crack masks for the segmenter.
    order = [str(c) for c in np.random.default_rng([seed, 0x71DE0]).permutation(SEWER_CODES)]
    order.insert(0, order.pop(order.index("RB")))
    per_video = max(1, int(round(seconds / 10.0 * 3)))
    jobs = []
    for k in range(n):
        shift = (k * per_video) % len(order)
        jobs.append((folder, f"inspection_{k:03d}", seed * 1000 + k, seconds, fps, tuple(size),
                     order[shift:] + order[:shift]))
    if workers > 1 and n > 1:
        # Each video has its own seed, so rendering them in parallel writes the same bytes.
        task = bar.add_task("inspection videos", total=n)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, n), initializer=_init_worker) as pool:
            for mp4 in pool.imap(_render_video_job, jobs):  # in order: the list matches the names
                summary.videos.append(mp4)
                bar.advance(task)
        return
    for k, job in enumerate(jobs):
        task = bar.add_task(f"video {k + 1}/{n}", total=max(1, int(round(seconds * fps))))
        summary.videos.append(render_video(*job, advance=lambda task=task: bar.advance(task)).mp4)


DEFAULT_SET = {"images": 500, "videos": 1, "crack_images": 100, "seed": 0}


def default_synthetic_dir(create: bool = True, progress: bool = True) -> Path:
    """The shared default synthetic set (for commands run without --data), generated on first use.

    Lives in $EDGESEWER_SYNTH_DIR, else $XDG_CACHE_HOME/edgesewer/synth-v1 (~/.cache/...). It is
    written to a temporary sibling and renamed, so concurrent first uses cannot see half a set.
    """
    env = os.environ.get("EDGESEWER_SYNTH_DIR")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = Path(env) if env else cache / "edgesewer" / "synth-v1"
    if (root / MANIFEST).is_file() or not create:
        return root
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    generate(tmp, progress=progress, workers=available_workers(), **DEFAULT_SET)
    try:
        tmp.replace(root)
    except OSError:  # somebody else finished first (or root is a non-empty folder): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / MANIFEST).is_file():
            raise DataError(f"{root}: exists but holds no synthetic set; remove it or set "
                            "EDGESEWER_SYNTH_DIR") from None
    return root


def available_workers() -> int:
    """Worker processes worth starting on this machine (the generator is CPU-bound)."""
    return max(1, min(4, os.cpu_count() or 1))
