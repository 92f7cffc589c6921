"""The one interface every inference backend offers: float32 NCHW batch in, named arrays out.

Backends know nothing about classes, thresholds or frames; they load an `Artifact` and run it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from edgesewer.runtime.artifact import Artifact, TensorSpec


class Backend(ABC):
    """Runs one artifact. Subclasses load in `__init__` and must be usable from one thread at a time."""

    name: str = "backend"

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.artifact.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.artifact.outputs

    @property
    def max_batch(self) -> int | None:
        """Largest batch the backend accepts (None: no limit)."""
        return None

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a float32 (N, C, H, W) batch; returns every output by name, each with N rows."""

    def warmup(self, iterations: int = 2) -> None:
        """Run a few zero batches so first-call costs (allocation, kernel selection) are not timed."""
        shape = [1 if s < 0 else s for s in self.inputs[0].shape]
        batch = np.zeros(shape, dtype=np.float32)
        for _ in range(iterations):
            self.infer(batch)

    def close(self) -> None:
        """Free sessions and buffers; safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
