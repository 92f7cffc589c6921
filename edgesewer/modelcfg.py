"""What a deployed model needs to be run: input size, normalisation, classes, thresholds.

Torch-free on purpose: training writes it into checkpoints, export writes it into the ONNX
metadata and the sidecar JSON, and the runtime reads it back with nothing else installed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edgesewer.taxonomy import SEWER_CODES

SEWERML_MEAN = (0.523, 0.453, 0.345)
SEWERML_STD = (0.210, 0.199, 0.154)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelCfg:
    """Static description of one model variant (timm's PretrainedCfg, jetson-inference's models.json)."""

    name: str
    task: str  # "classify" | "segment" | "video" | "zeroshot"
    input_size: int  # square side in pixels
    in_chans: int = 3
    mean: tuple[float, ...] = SEWERML_MEAN
    std: tuple[float, ...] = SEWERML_STD
    classes: tuple[str, ...] = SEWER_CODES
    thresholds: tuple[float, ...] | None = None  # tuned per class; None means 0.5 everywhere
    interpolation: str = "bilinear"
    paper: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCfg":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("mean", "std", "classes", "thresholds"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input shape: (C, S, S), or (T, C, S, S) for frame-stack video models (Video Swin)."""
        image = (self.in_chans, self.input_size, self.input_size)
        if self.extra.get("input_layout") == "BTCHW":
            return (int(self.extra["frames"]), *image)
        return image

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
