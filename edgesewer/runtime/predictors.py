"""A loaded model as the pipeline uses it: artifact + backend + how to turn a frame into its input.

Classifiers use the shared `edgesewer.data.preprocess` (resize, mean/std); the crack segmenter uses
`edgesewer.data.edges.crack_input` (RGB in [-1, 1] + edge map), either on the whole frame resized to
the model input or on overlapping full-resolution tiles (`edgesewer.runtime.tiling`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesewer.data.edges import crack_input
from edgesewer.data.preprocess import preprocess
from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import Artifact, load_artifact
from edgesewer.runtime.backends import Backend, load_backend
from edgesewer.runtime.tiling import tiled_predict


class Predictor:
    """Base: `prepare(rgb)` runs in the preprocess thread, `run(batch)` in the inference thread."""

    task = ""

    def __init__(self, artifact: Artifact, backend: Backend) -> None:
        self.artifact = artifact
        self.backend = backend
        self.cfg = artifact.cfg

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, inputs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Outputs of a batch of prepared inputs, split back into one dict per frame."""
        outputs = self.backend.infer(np.stack(inputs))
        return [{name: value[i] for name, value in outputs.items()} for i in range(len(inputs))]

    def close(self) -> None:
        self.backend.close()


class ClassifierPredictor(Predictor):
    task = "classify"

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        return preprocess(rgb, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)[0]


class SegmenterPredictor(Predictor):
    """Crack probability map per frame; with `tiles`, full-resolution overlapping tiles instead of a resize."""

    task = "segment"

    def __init__(self, artifact: Artifact, backend: Backend, tiles: bool = False, tile_overlap: int | None = None) -> None:
        super().__init__(artifact, backend)
        self.tiles = tiles
        self.tile_overlap = tile_overlap
        self.edge = str(self.cfg.extra.get("edge", "canny"))

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return crack_input(rgb, size=None if self.tiles else self.cfg.input_size, edge=self.edge)

    def run(self, inputs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not self.tiles:
            return super().run(inputs)
        size = self.cfg.input_size
        batch = self.backend.max_batch or 8
        return [
            {"prob": tiled_predict(x, lambda b: self.backend.infer(b)["prob"], size, self.tile_overlap, batch)}
            for x in inputs
        ]


def load_predictor(
    path: str | Path,
    expect: str,
    backend: str | None = None,
    *,
    providers: str = "cpu",
    threads: int | None = None,
    tiles: bool = False,
) -> Predictor:
    """Load an artifact for the role `expect` ("classify" for --model, "segment" for --seg)."""
    artifact = load_artifact(path)
    role = "--seg" if expect == "segment" else "--model"
    if expect == "classify" and artifact.task == "video":
        raise BackendError(f"{artifact.model_path.name}: a video-level (clip) model; pass it with --clip-model")
    if (artifact.task == "segment") != (expect == "segment"):
        raise BackendError(
            f"{role} {artifact.model_path.name}: is a {artifact.task} model, {role} needs a {expect} model"
        )
    options = (
        {"providers": providers, "threads": threads}
        if (backend or "ort") == "ort" and artifact.format == "onnx"
        else {}
    )
    loaded = load_backend(artifact, backend, **options)
    if expect == "segment":
        return SegmenterPredictor(artifact, loaded, tiles=tiles)
    return ClassifierPredictor(artifact, loaded)
