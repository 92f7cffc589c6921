"""What the benchmark runs on: the data folder per task, the video, the weights per model, and the
deployable artifacts, reused from the cache under the output folder or made by the export stage.

Artifacts are never made here: a missing one is produced by `edgesewer.export.pipeline.run_export`
(or, for an engine whose ONNX already exists, `tensorrt_build.build_from_artifact`), exactly as
`edgesewer export` makes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgesewer.errors import DataError, EdgesewerError, ExportError

RANDOM = "random"
# Export order for missing precisions: int8 first, because on ort-cpu it also writes int8-cpu and fp32.
EXPORT_ORDER = ("int8", "fp16", "int8-fp16", "int8-cpu", "fp32")


def is_sewerml_dir(path: Path) -> bool:
    return any((path / f"SewerML_{split}.csv").is_file() for split in ("Train", "Val", "Test"))


def data_for_task(data: Path, task: str, crack_data: Path | None = None) -> Path:
    """The labelled folder for a task: a Sewer-ML folder for classifiers, a crack set for the segmenter.

    `data` may be that folder itself or a root holding both (the synthetic set: sewerml/, crack/).
    """
    if task != "segment":
        if is_sewerml_dir(data):
            return data
        if is_sewerml_dir(data / "sewerml"):
            return data / "sewerml"
        raise DataError(f"{data}: not a Sewer-ML folder (no SewerML_Train.csv / SewerML_Val.csv here or in "
                        f"{data / 'sewerml'}); pass --data with one")
    from edgesewer.export.calibrate import find_crack_root

    base = crack_data or (data.parent if is_sewerml_dir(data) else data)
    try:
        root = find_crack_root(base)
    except DataError:
        raise DataError(f"{base}: no crack dataset here or in its sub-folders; pass --crack-data DIR") from None
    if is_sewerml_dir(root):
        raise DataError(f"{base}: found only a Sewer-ML folder, no crack dataset; pass --crack-data DIR")
    return root


def find_video(data: Path, video: Path | None) -> Path | None:
    """--video, else the first .mp4 of `data/videos`, `data/../videos` or `data` (the synthetic layout)."""
    if video is not None:
        if not video.is_file():
            raise DataError(f"{video}: video file not found")
        return video
    for folder in (data / "videos", data.parent / "videos", data):
        found = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def parse_weights(values: Sequence[str] | None, models: Sequence[str]) -> dict[str, str | None]:
    """--weights: none (newest checkpoint each), `random` (all), `MODEL=CKPT` pairs, or one CKPT per model in order."""
    result: dict[str, str | None] = {m: None for m in models}
    values = [v for v in (values or []) if v.strip()]
    if not values:
        return result
    if values == [RANDOM]:
        return {m: RANDOM for m in models}
    paired = [v for v in values if "=" in v]
    if paired and len(paired) != len(values):
        raise EdgesewerError("--weights: use either MODEL=CKPT for every value or plain values, not a mix")
    if paired:
        for value in values:
            model, ckpt = (part.strip() for part in value.split("=", 1))
            if model not in result:
                raise EdgesewerError(f"--weights {value}: {model} is not in --models ({', '.join(models)})")
            result[model] = ckpt
        return result
    if len(values) != len(models):
        raise EdgesewerError(f"--weights: {len(values)} value(s) for {len(models)} model(s); give one per model "
                             "(in --models order), MODEL=CKPT pairs, or `random`")
    return dict(zip(models, values))


def resolve_weights(model: str, weights: str | None, runs_dir: Path) -> str:
    """The weights label the export will write into the sidecar: a checkpoint path or `random`."""
    if weights is None:
        from edgesewer.export.weights import newest_checkpoint

        return str(newest_checkpoint(model, runs_dir))
    if weights != RANDOM and not Path(weights).is_file():
        raise DataError(f"--weights {weights}: checkpoint not found")
    return weights


def _fits(sidecar: dict[str, Any], model_file: Path, weights: str, input_size: int | None, target: str) -> bool:
    """A cached artifact is reused only when it was made from the same weights, size and target.

    `input_size` None accepts any size (a checkpoint's own size, when no --imgsz was given).
    """
    cfg = sidecar.get("model_cfg") or {}
    if sidecar.get("weights") != weights or sidecar.get("target") != target:
        return False
    if input_size is not None and cfg.get("input_size") != input_size:
        return False
    # A checkpoint retrained in place is newer than the artifact made from it.
    return weights == RANDOM or Path(weights).stat().st_mtime <= model_file.stat().st_mtime


def cached_artifact(folder: Path, model: str, precision: str, weights: str, input_size: int | None,
                    backend: str) -> Path | None:
    """`<folder>/<model>.<precision>.onnx|.engine` when it exists and fits, else None."""
    from edgesewer.export.metadata import read_sidecar

    suffix = ".engine" if backend == "tensorrt" else ".onnx"
    path = folder / f"{model}.{precision}{suffix}"
    if not path.is_file():
        return None
    try:
        sidecar = read_sidecar(path)
    except DataError:
        return None
    target = "tensorrt" if backend == "tensorrt" else "ort-cpu"
    return path if _fits(sidecar, path, weights, input_size, target) else None


def cache_root(out: Path) -> Path:
    """`<out>/artifacts`, holding a `.gitignore` so that a committed results folder never drags models along."""
    root = out / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# exported models cached by `edgesewer benchmark`: not for version control\n*\n")
    return root


class ArtifactCache:
    """Artifacts of one model under `<out>/artifacts/<model>/`, exported on demand, failures remembered."""

    def __init__(self, folder: Path, model: str, weights: str, imgsz: int | None, input_size: int | None,
                 backend: str, export_kwargs: dict[str, Any], log: Callable[[str], None]) -> None:
        """`imgsz` goes to the export (None: the weights' own size); `input_size` is what a cached artifact
        must have (None: any)."""
        self.folder, self.model, self.weights = folder, model, weights
        self.imgsz, self.input_size = imgsz, input_size
        self.backend, self.export_kwargs, self.log = backend, export_kwargs, log
        self.failures: dict[str, str] = {}

    def get(self, precision: str, wanted: Sequence[str]) -> Path:
        """The artifact for `precision`, exporting the missing ones (all of `wanted` at once where possible)."""
        found = cached_artifact(self.folder, self.model, precision, self.weights, self.input_size, self.backend)
        if found is not None:
            return found
        if precision in self.failures:
            raise ExportError(self.failures[precision])
        if self.backend == "tensorrt":
            return self._engine(precision)
        for candidate in sorted(wanted, key=EXPORT_ORDER.index):
            if not self._missing(precision):
                break
            if candidate == precision or precision not in self._covered(candidate):
                continue
            if self._missing(candidate):
                try:
                    self._export(candidate)  # writes `precision` too
                except ExportError:
                    break  # that row will say why; try `precision` on its own below
        if self._missing(precision):
            self._export(precision)
        found = cached_artifact(self.folder, self.model, precision, self.weights, self.input_size, self.backend)
        if found is None:
            raise ExportError(f"the export of {self.model} {precision} wrote no artifact to {self.folder}")
        return found

    @staticmethod
    def _covered(precision: str) -> tuple[str, ...]:
        return ("fp32", "int8", "int8-cpu") if precision == "int8" else ("fp32", precision)

    def _missing(self, precision: str) -> bool:
        return cached_artifact(self.folder, self.model, precision, self.weights, self.input_size, "ort") is None

    def _export(self, precision: str, target: str = "ort-cpu"):
        from edgesewer.export.pipeline import ExportOptions, run_export

        self.log(f"export {self.model} {precision} for {target} -> {self.folder}")
        try:
            return run_export(ExportOptions(model=self.model, precision=precision, weights=self.weights,
                                            target=target, out=self.folder, imgsz=self.imgsz, accuracy=False,
                                            progress=False, **self.export_kwargs), log=self.log)
        except EdgesewerError as exc:
            self.failures[precision] = f"export failed: {exc}"
            raise ExportError(self.failures[precision]) from None

    def _engine(self, precision: str) -> Path:
        """An engine: built from a fitting TensorRT-target ONNX, else exported with --target tensorrt."""
        from edgesewer.export.metadata import read_sidecar
        from edgesewer.export.tensorrt_build import build_from_artifact

        onnx = self.folder / f"{self.model}.{precision}.onnx"
        max_batch = self.export_kwargs.get("batch")
        try:
            if onnx.is_file() and _fits(read_sidecar(onnx), onnx, self.weights, self.input_size, "tensorrt"):
                self.log(f"build TensorRT engine from {onnx}")
                return build_from_artifact(onnx, max_batch=max_batch).engine_path
        except EdgesewerError as exc:
            self.failures[precision] = f"engine build failed: {exc}"
            raise ExportError(self.failures[precision]) from None
        result = self._export(precision, target="tensorrt")
        if result.engine is None:
            why = "; ".join(result.notes) or "the export built no engine"
            self.failures[precision] = f"no TensorRT engine: {why}"
            raise ExportError(self.failures[precision])
        return result.engine
