"""INT8 calibration on real images: selection, a corrupt-tolerant reader, cached activation ranges.

Calibration (slow, needs data) is kept apart from quantisation (fast, deterministic), as in ONNX
Runtime's own design: the ranges are computed once per (model, image list, input size, method,
op types) and cached as ORT `TensorsData` JSON; both INT8 variants quantise from the same cache.
Corrupt images are skipped and counted, never fatal unless nothing is readable.

Super-image (video) models take 9 frames tiled 3 x 3, never a single still: their calibration and
parity inputs are super-images of 9 copies of each still (`superimage_preparer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesewer.data.images import read_image
from edgesewer.errors import DataError
from edgesewer.modelcfg import ModelCfg

# The op types whose inputs/outputs get ranges: what both INT8 variants quantise.
QUANT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
METHODS = ("entropy", "percentile", "minmax")
CACHE_VERSION = 2  # 2: crack models calibrate on native-resolution tiles


def default_cache_dir() -> Path:
    root = os.environ.get("EDGESEWER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgesewer")
    return Path(root) / "calibration"


@dataclass
class ImageSet:
    """Images chosen from a dataset for calibration / parity / accuracy (labels when known)."""

    paths: list[Path]
    source: Path
    split: str
    labels: np.ndarray | None = None  # classifiers: N x C uint8
    masks: list[Path] | None = None  # segmenter: ground-truth mask per image

    def __len__(self) -> int:
        return len(self.paths)


def select_images(data_dir: str | Path, task: str, n: int, seed: int = 0, split: str | None = None) -> ImageSet:
    """Choose `n` images: class-stratified for Sewer-ML classifiers, seeded random for crack sets.

    `split` defaults to the training split when the folder has one (calibrating on the images the
    accuracy report scores would flatter INT8), else the validation split.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data folder not found")
    if task == "segment":
        return _select_crack_images(data_dir, n, seed, split)
    from edgesewer.data.sewerml import load_split, stratified_sample

    if split is None:
        if data_dir.is_dir() and not any((data_dir / f"SewerML_{s}.csv").is_file() for s in ("Train", "Val")):
            raise DataError(f"{data_dir}: not a Sewer-ML folder (no SewerML_Train.csv or SewerML_Val.csv); make one "
                            "with `edgesewer data synth --out DIR` (then use DIR/sewerml) or use the Sewer-ML download")
        split = "Train" if (data_dir / "SewerML_Train.csv").is_file() or not data_dir.is_dir() else "Val"
    sample = stratified_sample(load_split(data_dir, split), n, seed)
    return ImageSet([sample.image_path(i) for i in range(len(sample))], data_dir, split, sample.labels)


def _select_crack_images(root: Path, n: int, seed: int, split: str | None) -> ImageSet:
    from edgesewer.data.crack import detect_layout, list_pairs

    root = find_crack_root(root)
    layout = detect_layout(root)
    # Calibrate on training images only: every layout has a train split (derived when the set ships none),
    # and calibrating on the test images the accuracy report scores would flatter INT8.
    split = split or "train"
    pairs = list_pairs(root, split, layout)
    if n < len(pairs):
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False))
        pairs = [pairs[i] for i in keep]
    return ImageSet([p.image for p in pairs], root, split, masks=[p.mask for p in pairs])


def find_crack_root(root: Path) -> Path:
    """The crack dataset inside `root`: `root` itself, or a crack-set subfolder (the synthetic set's layout)."""
    from edgesewer.data.crack import detect_layout

    try:
        detect_layout(root)
        return root
    except DataError:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            try:
                detect_layout(sub)
                return sub
            except DataError:
                continue
        raise


def is_superimage(cfg: ModelCfg) -> bool:
    """A video model whose input is 9 frames tiled 3 x 3 (`edgesewer.models.superimage`, `train.video`).

    The frame-based video route trains an ordinary frame classifier (task "classify"): not this.
    """
    return cfg.task == "video" and cfg.extra.get("video_kind", "superimage") == "superimage"


def superimage_preparer(cfg: ModelCfg) -> Callable[[list[np.ndarray]], np.ndarray]:
    """RGB stills -> one super-image of 9 copies each, laid out and normalised as the runtime's clip mode does.

    Consecutive frames of an inspection video are near-copies of one scene, so 9 copies of a still
    are the closest stand-in for a clip; 9 unrelated stills would be a layout training never showed.
    """
    from edgesewer.data.preprocess import preprocess
    from edgesewer.data.superimage import GRID, make_superimage, resize_tile

    grid = int(cfg.extra.get("grid", GRID))
    tile = int(cfg.extra.get("tile") or cfg.input_size // grid)

    def prepare(images: list[np.ndarray]) -> np.ndarray:
        canvases = [make_superimage([resize_tile(image, tile, cfg.interpolation)] * (grid * grid), tile, grid=grid,
                                    interpolation=cfg.interpolation) for image in images]
        return preprocess(canvases, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)

    return prepare


def frame_stack_preparer(cfg: ModelCfg) -> Callable[[list[np.ndarray]], np.ndarray]:
    """RGB stills -> [N, T, 3, S, S] stacks of T copies of each (Video Swin-B), by the super-image's reasoning."""
    from edgesewer.data.preprocess import preprocess

    frames = int(cfg.extra["frames"])

    def prepare(images: list[np.ndarray]) -> np.ndarray:
        x = preprocess(images, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)
        return np.ascontiguousarray(np.repeat(x[:, None], frames, axis=1))

    return prepare


def crack_tile_preparer(cfg: ModelCfg) -> Callable[[list[np.ndarray]], np.ndarray]:
    """RGB images -> the centre model-size tile of each, at native resolution with the edge channel computed
    on the whole image: what the scoring protocol and the runtime's tiling feed the network (a whole image
    squashed to the input size would show cracks several times thinner than the model ever sees)."""
    from edgesewer.data.edges import crack_input

    edge, tile = str(cfg.extra.get("edge", "canny")), cfg.input_size

    def centre_tile(rgb: np.ndarray) -> np.ndarray:
        full = crack_input(rgb, edge=edge)
        _, height, width = full.shape
        pad_h, pad_w = max(0, tile - height), max(0, tile - width)
        if pad_h or pad_w:  # as tiled_predict pads a frame smaller than a tile
            full = np.pad(full, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect" if min(height, width) > 1 else "edge")
        top, left = (full.shape[1] - tile) // 2, (full.shape[2] - tile) // 2
        return full[:, top:top + tile, left:left + tile]

    return lambda images: np.stack([centre_tile(rgb) for rgb in images]).astype(np.float32, copy=False)


def input_preparer(cfg: ModelCfg) -> Callable[[list[np.ndarray]], np.ndarray]:
    """RGB uint8 images -> the network input batch, exactly as training and the runtime build it."""
    if is_superimage(cfg):
        return superimage_preparer(cfg)
    if cfg.task == "video" and cfg.extra.get("input_layout") == "BTCHW":
        return frame_stack_preparer(cfg)
    if cfg.task == "segment":
        return crack_tile_preparer(cfg)
    from edgesewer.data.preprocess import preprocess

    return lambda images: preprocess(images, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)


@dataclass
class LoadedBatches:
    """Network-ready batches plus which files had to be skipped (path, reason)."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    used: int = 0


def iter_batches(
    paths: Sequence[Path], prepare: Callable[[list[np.ndarray]], np.ndarray], batch: int, stats: LoadedBatches,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Read `paths` in batches, skipping unreadable images into `stats.skipped`."""
    for start in range(0, len(paths), batch):
        images = []
        for path in paths[start:start + batch]:
            try:
                images.append(read_image(path))
            except DataError as exc:
                stats.skipped.append((str(path), str(exc)))
        if on_step:
            on_step(len(paths[start:start + batch]))
        if images:
            stats.used += len(images)
            yield prepare(images)


class OneBatchReader:
    """ORT CalibrationDataReader over a single prepared batch (duck-typed: `get_next`)."""

    def __init__(self, array: np.ndarray, input_name: str) -> None:
        self._items = [{input_name: array}]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self._items.pop() if self._items else None

    def __iter__(self):
        return iter(lambda: self.get_next(), None)


@dataclass
class Calibration:
    """Where the ranges are cached and what they were computed from."""

    cache_path: Path
    method: str
    images: int
    skipped: int
    data: str
    cache_hit: bool
    skipped_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The sidecar's "calibration" entry."""
        return {"images": self.images, "method": self.method, "data": self.data, "skipped": self.skipped}


def calibration_key(
    onnx_sha256: str, images: Sequence[Path], input_size: int, method: str, op_types: Sequence[str]
) -> str:
    payload = json.dumps(
        {"v": CACHE_VERSION, "onnx": onnx_sha256, "images": [str(Path(p).resolve()) for p in images],
         "size": int(input_size), "method": method, "ops": sorted(op_types)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise DataError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[method]


def calibrate(
    onnx_path: str | Path,
    images: ImageSet,
    cfg: ModelCfg,
    method: str = "entropy",
    cache_dir: str | Path | None = None,
    op_types: Sequence[str] = QUANT_OP_TYPES,
    batch: int = 8,
    progress: bool = True,
) -> Calibration:
    """Activation ranges of the FP32 ONNX at `onnx_path` over `images`, from the cache when possible.

    Raises:
        DataError: no image could be read, or an unknown method.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from edgesewer.export.metadata import sha256_model
    from edgesewer.export.onnx_io import has_external_data

    ort_calib_method = ort_method(method)
    if not images.paths:
        raise DataError(f"{images.source}: no calibration images in the {images.split} split")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = calibration_key(sha256_model(onnx_path), images.paths, cfg.input_size, method, op_types)
    cache_path = cache_dir / f"{key[:24]}.json"
    meta_path = cache_dir / f"{key[:24]}.meta.json"
    if cache_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Calibration(cache_path, method, meta["images"], meta["skipped"], meta["data"], True,
                           meta.get("skipped_files", []))

    stats = LoadedBatches()
    prepare = input_preparer(cfg)
    with tempfile.TemporaryDirectory(prefix="edgesewer-calib-") as tmp:
        calibrator = create_calibrator(
            Path(onnx_path), list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_calib_method, providers=["CPUExecutionProvider"],
            use_external_data_format=has_external_data(onnx_path),
        )
        with progress_bar(progress, f"calibrating ({method})", len(images.paths)) as step:
            # One batch per collect_data call: ORT's histogram calibrators otherwise keep every
            # intermediate activation of every image in memory until the end.
            for array in iter_batches(images.paths, prepare, batch, stats, on_step=step):
                with contextlib.redirect_stdout(io.StringIO()):  # ORT prints a line per call
                    calibrator.collect_data(OneBatchReader(array, "input"))
        if stats.used == 0:
            first = stats.skipped[0][1] if stats.skipped else "no images"
            raise DataError(f"{images.source}: none of the {len(images.paths)} calibration images could be read "
                            f"(e.g. {first})")
        with contextlib.redirect_stdout(io.StringIO()):
            ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache_path)
    result = Calibration(cache_path, method, stats.used, len(stats.skipped), str(images.source), False,
                         [p for p, _ in stats.skipped])
    meta = {**result.as_dict(), "skipped_files": result.skipped_files, "onnx": str(onnx_path)}
    _write_json(meta_path, meta)
    return result


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class progress_bar:
    """Rich progress bar on stderr that yields an `advance(n)` callback; silent when disabled."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.enabled, self.description, self.total = enabled, description, total
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
