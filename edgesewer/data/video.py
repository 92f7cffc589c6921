"""Videos for clip-level classification: decoding, label files, results files. numpy + OpenCV only.

Formats (SPEC section 4):

* **Labels** `{"video.mp4": [class indices]}` (VideoPipe / QV-Pipe track 1). The class set is
  named separately: `videopipe` (17 codes ZC CJ ... TL, ZC = normal, exclusive) or `sewerml`
  (the 17 Sewer-ML codes; an empty list is a normal clip).
* **Results** `{"video.mp4": [17 scores]}`, the challenge submission format.
* **Synthetic inspection videos** `videos/inspection_000.mp4` + `.json` with per-frame ground truth
  (`{"fps", "n_frames", "codes", "frames": [[codes in view] per frame], "segments"}`); they are
  cut into 3-6 s clips labelled with every code in view in any of their frames, and written as
  clip files + a labels JSON in the format above, so that one loader serves both kinds.

Every problem a user can cause (unreadable or too-short video, malformed JSON, index out of range)
raises `DataError` with one line naming the file and the entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from edgesewer.data.superimage import N_FRAMES, sample_indices
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, VIDEOPIPE_CODES

CLASS_SETS: dict[str, tuple[str, ...]] = {"videopipe": VIDEOPIPE_CODES, "sewerml": SEWER_CODES}


def class_set(name: str) -> tuple[str, ...]:
    if name not in CLASS_SETS:
        raise DataError(f"unknown class set {name!r}; choose {' or '.join(CLASS_SETS)}")
    return CLASS_SETS[name]


# ------------------------------------------------------------------------------------------ decoding

@dataclass(frozen=True)
class VideoInfo:
    path: Path
    n_frames: int
    fps: float
    width: int
    height: int


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open as a video (not a video, an unsupported codec or a truncated file)")
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, fps and size from the container; counts by decoding when the header has none."""
    path = Path(path)
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if n <= 0:  # some containers (raw streams, broken indices) do not say: count them
            while cap.grab():
                n += 1
    finally:
        cap.release()
    if n <= 0:
        raise DataError(f"{path}: the video holds no decodable frames")
    return VideoInfo(path, n, fps, width, height)


SEEK_GAP = 50  # frames: farther apart than this, seeking beats decoding every frame in between


def read_frames(path: str | Path, indices: Sequence[int], seek_gap: int | None = SEEK_GAP) -> list[np.ndarray]:
    """The frames at `indices` (any order, repeats allowed) as RGB uint8.

    Frames less than `seek_gap` apart are reached by grab() (decode without conversion), farther
    ones by seeking: long videos are not decoded end to end for 9 frames. OpenCV's FFmpeg seek is
    frame-exact on constant-frame-rate files (tested on mp4v); `seek_gap=None` decodes strictly
    sequentially for files where it is not.
    """
    path = Path(path)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return []
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    cap = _open(path)
    found: dict[int, np.ndarray] = {}
    try:
        position = 0  # index of the frame the next grab() returns
        for index in wanted:
            if seek_gap is not None and index - position > seek_gap:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                position = index
            while position <= index:
                if not cap.grab():
                    raise DataError(f"{path}: video ends before frame {index} "
                                    "(too short, truncated, or its header overstates the length)")
                position += 1
            ok, image = cap.retrieve()
            if not ok or image is None:
                raise DataError(f"{path}: frame {index} cannot be decoded")
            found[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    return [found[int(i)] for i in indices]


def read_clip(path: str | Path, k: int = N_FRAMES, rng: np.random.Generator | None = None,
              n_frames: int | None = None, min_frames: int = N_FRAMES) -> list[np.ndarray]:
    """`k` frames sampled uniformly over the whole video (see `sample_indices`), RGB, time order.

    Raises DataError when the video cannot be read or has fewer than `min_frames` frames.
    """
    n = n_frames if n_frames is not None else probe_video(path).n_frames
    if n < min_frames:
        raise DataError(f"{path}: only {n} frames; a clip needs at least {min_frames}")
    return read_frames(path, sample_indices(n, k, rng))


# ------------------------------------------------------------------------------------------ labels

@dataclass
class VideoLabels:
    """Videos and their multi-hot targets, in file order (which the official AP's shuffle depends on)."""

    names: list[str]
    targets: np.ndarray  # (N, K) uint8
    classes: tuple[str, ...]
    source: Path
    video_dir: Path

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return self.video_dir / self.names[i]

    def subset(self, rows: Iterable[int]) -> "VideoLabels":
        rows = [int(r) for r in rows]
        return VideoLabels([self.names[r] for r in rows], self.targets[rows], self.classes, self.source, self.video_dir)


def _load_json_object(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{\"video.mp4\": [...]}}, got a {type(data).__name__}")
    return data


def read_labels(path: str | Path, classes: str | Sequence[str] = "videopipe",
                video_dir: str | Path | None = None) -> VideoLabels:
    """Read `{"video.mp4": [indices]}`; videos are looked up in `video_dir` (default: the JSON's folder)."""
    path = Path(path)
    codes = class_set(classes) if isinstance(classes, str) else tuple(classes)
    data = _load_json_object(path, "labels")
    if not data:
        raise DataError(f"{path}: lists no videos")
    targets = np.zeros((len(data), len(codes)), dtype=np.uint8)
    for row, (name, indices) in enumerate(data.items()):
        if not isinstance(indices, list):
            raise DataError(f"{path}: entry {name!r}: expected a list of class indices, got {indices!r}")
        for value in indices:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(codes):
                raise DataError(f"{path}: entry {name!r}: class index {value!r} is not in 0..{len(codes) - 1} "
                                f"({len(codes)} classes: {' '.join(codes)})")
            targets[row, value] = 1
    folder = Path(video_dir) if video_dir is not None else path.parent
    return VideoLabels(list(data), targets, codes, path, folder)


def write_labels(path: str | Path, names: Sequence[str], targets: np.ndarray) -> Path:
    """Write multi-hot targets as `{"video.mp4": [indices]}`."""
    path = Path(path)
    data = {name: [int(k) for k in np.flatnonzero(row)] for name, row in zip(names, np.asarray(targets))}
    _write_json(path, data)
    return path


def write_results(path: str | Path, names: Sequence[str], scores: np.ndarray) -> Path:
    """Write the submission format `{"video.mp4": [K scores]}` (scores as floats, 6 decimals)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(names):
        raise ValueError(f"{len(names)} names but scores of shape {scores.shape}")
    data = {name: [round(float(s), 6) for s in row] for name, row in zip(names, scores)}
    return _write_json(Path(path), data)


def read_results(path: str | Path, n_classes: int = len(VIDEOPIPE_CODES)) -> dict[str, np.ndarray]:
    """Read `{"video.mp4": [scores]}`; every entry must hold exactly `n_classes` numbers."""
    path = Path(path)
    data = _load_json_object(path, "results")
    out: dict[str, np.ndarray] = {}
    for name, row in data.items():
        if not isinstance(row, list) or len(row) != n_classes or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            got = f"{len(row)} values" if isinstance(row, list) else repr(row)
            raise DataError(f"{path}: entry {name!r}: expected {n_classes} numbers, got {got}")
        out[name] = np.asarray(row, dtype=np.float64)
    return out


def align_results(labels: VideoLabels, results: dict[str, np.ndarray], results_path: str | Path) -> np.ndarray:
    """(N, K) scores in the label file's order; every labelled video must have scores.

    (The official script silently scores a missing video as 16 zeros, which then breaks; refuse instead.)
    """
    missing = [n for n in labels.names if n not in results]
    if missing:
        raise DataError(f"{results_path}: no scores for {len(missing)} of the {len(labels)} videos in "
                        f"{labels.source}, e.g. {', '.join(missing[:3])}")
    return np.stack([results[n] for n in labels.names])


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------ synthetic videos

@dataclass
class InspectionGT:
    """Per-frame ground truth of one synthetic inspection video."""

    video: Path
    fps: float
    frames: list[list[str]]  # codes in view, per frame

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def targets(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(17,) uint8: the Sewer-ML codes in view in any frame of [start, stop)."""
        out = np.zeros(len(SEWER_CODES), dtype=np.uint8)
        for codes in self.frames[start:stop]:
            for code in codes:
                out[SEWER_CODES.index(code)] = 1
        return out


def read_inspection_gt(json_path: str | Path) -> InspectionGT:
    """Read a synthetic video's `.json`; the video is the same-stem `.mp4` next to it."""
    json_path = Path(json_path)
    data = _load_json_object(json_path, "ground-truth")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{json_path}: needs a non-empty \"frames\" list (codes in view per frame)")
    for i, codes in enumerate(frames):
        if not isinstance(codes, list) or any(c not in SEWER_CODES for c in codes):
            raise DataError(f"{json_path}: frames[{i}] = {codes!r} is not a list of Sewer-ML codes")
    fps = data.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DataError(f"{json_path}: \"fps\" must be a positive number, got {fps!r}")
    return InspectionGT(json_path.with_suffix(".mp4"), float(fps), frames)


def plan_clips(n_frames: int, fps: float, rng: np.random.Generator, min_s: float = 3.0,
               max_s: float = 6.0, stride_s: float | None = None) -> list[tuple[int, int]]:
    """(start, stop) windows of random length in [min_s, max_s] seconds that fit in the video.

    Without `stride_s` they are consecutive and non-overlapping (a remainder shorter than min_s is
    dropped); with it a window starts every `stride_s` seconds, so they overlap (more training clips).
    """
    if not 0 < min_s <= max_s:
        raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
    if stride_s is not None and stride_s <= 0:
        raise ValueError(f"stride_s must be positive, got {stride_s}")
    lo, hi = max(1, round(min_s * fps)), max(1, round(max_s * fps))
    step = max(1, round(stride_s * fps)) if stride_s else None
    windows, start = [], 0
    while start + lo <= n_frames:
        stop = min(start + int(rng.integers(lo, hi + 1)), n_frames)
        windows.append((start, stop))
        start = start + step if step else stop
    return windows


def find_inspection_videos(root: str | Path) -> list[Path]:
    """The ground-truth JSONs of the synthetic videos under `root` or `root/videos`."""
    root = Path(root)
    folder = root / "videos" if (root / "videos").is_dir() else root
    found = sorted(p for p in folder.glob("*.json") if p.with_suffix(".mp4").is_file())
    if not found:
        raise DataError(f"{folder}: no synthetic inspection videos (*.mp4 with a same-stem .json); "
                        "make some with `edgesewer data synth --videos N`")
    return found


def _writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot write an mp4v video here")
    return writer


def shrink_to(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """`image` shrunk (area interpolation, aspect kept) so its longest side is at most `max_side`."""
    if not max_side or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def cut_inspection_clips(root: str | Path, out: str | Path, min_s: float = 3.0, max_s: float = 6.0,
                         seed: int = 0, max_side: int | None = None, progress: bool = True,
                         stride_s: float | None = None) -> VideoLabels:
    """Cut every synthetic inspection video under `root` into clip files labelled with Sewer-ML codes.

    Writes `out/clips/<video>_cNNN.mp4` and `out/labels.json` (`{"clips/<file>": [code indices]}`,
    class set `sewerml`); a clip's labels are the codes in view in any of its frames. `max_side`
    shrinks frames (keeping the aspect ratio) to save decoding time in training; `stride_s` makes
    overlapping clips (see `plan_clips`).
    """
    from rich.progress import Progress

    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names: list[str] = []
    rows: list[np.ndarray] = []
    gts = [read_inspection_gt(p) for p in find_inspection_videos(root)]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("cutting clips", total=sum(g.n_frames for g in gts))
        for gt in gts:
            windows = plan_clips(gt.n_frames, gt.fps, rng, min_s, max_s, stride_s)
            clip_names = [f"clips/{gt.video.stem}_c{c:03d}.mp4" for c in range(len(windows))]
            _write_windows(gt, windows, [out / n for n in clip_names], max_side, lambda: bar.advance(task))
            names += clip_names
            rows += [gt.targets(start, stop) for start, stop in windows]
    if not names:
        raise DataError(f"{root}: the videos are shorter than one {min_s:g} s clip")
    labels_path = write_labels(out / "labels.json", names, np.stack(rows))
    return read_labels(labels_path, "sewerml")


def _write_windows(gt: InspectionGT, windows: list[tuple[int, int]], paths: list[Path], max_side: int | None,
                   advance) -> None:
    """One sequential pass over the video, feeding every frame to each window (writer) that holds it."""
    cap = _open(gt.video)
    writers: dict[int, cv2.VideoWriter] = {}
    last = max((stop for _, stop in windows), default=0)
    try:
        for index in range(last):
            ok, image = cap.read()
            if not ok:
                raise DataError(f"{gt.video}: ends at frame {index} but its JSON lists {gt.n_frames}")
            image = shrink_to(image, max_side)
            for w, (start, stop) in enumerate(windows):
                if index == start:
                    writers[w] = _writer(paths[w], gt.fps, (image.shape[1], image.shape[0]))
                if w in writers:
                    writers[w].write(image)
                    if index == stop - 1:
                        writers.pop(w).release()
            advance()
    finally:
        cap.release()
        for writer in writers.values():
            writer.release()
