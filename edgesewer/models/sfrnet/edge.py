"""The deployable SFR-Net: images in, one logit per class out, for a class list fixed at export time.

The text side runs once, on the host that exports: the class descriptions go through the adapted
text encoder and the short names through plain CLIP (for the class graph). Both results become
constants of `SFRNetEdge`, so the ONNX graph holds only the image encoder, MEF and the GCN, and a
device needs neither a tokenizer nor the text tower. A new class list (`--classes FILE`) means a
re-export, never retraining.

Output: `(score - offset) / temperature` as "logits", with the offset and temperature from
training's score calibration (ModelCfg.extra; 0 and 0.1 when absent), so the runtime's
sigmoid >= 0.5 decision is score >= offset.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from edgesewer.errors import DataError
from edgesewer.modelcfg import ModelCfg
from edgesewer.models.sfrnet.class_texts import ClassTexts, load_class_texts
from edgesewer.models.sfrnet.clip_backbone import ClipBackbone
from edgesewer.models.sfrnet.graph import GCNRefiner
from edgesewer.models.sfrnet.mef import MEFHead
from edgesewer.models.sfrnet.model import SFRNet

DEFAULT_TEMPERATURE = 0.1


class SFRNetEdge(nn.Module):
    """Image-only SFR-Net with the class text embeddings and the class graph baked in."""

    def __init__(self, backbone: ClipBackbone, mef: MEFHead, gcn: GCNRefiner, text: torch.Tensor,
                 adjacency: torch.Tensor, cfg: ModelCfg, offset: float = 0.0,
                 temperature: float = DEFAULT_TEMPERATURE) -> None:
        super().__init__()
        if text.shape[0] != adjacency.shape[0] or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"text {tuple(text.shape)} and adjacency {tuple(adjacency.shape)} disagree")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.backbone, self.mef, self.gcn = backbone, mef, gcn
        self.register_buffer("text", text.detach().clone())
        self.register_buffer("adjacency", adjacency.detach().clone())
        self.offset, self.temperature = float(offset), float(temperature)
        self.cfg = cfg

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Raw SFR-Net scores [B, C] (what `SFRNet.forward` gives for the same classes)."""
        with _standard_attention():
            tokens = self.backbone.image_tokens(images)
        return self.gcn(self.mef(tokens, self.text), self.adjacency)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.scores(images) - self.offset) / self.temperature


@contextmanager
def _standard_attention() -> Iterator[None]:
    """Keep nn.MultiheadAttention off its fused inference kernel, which has no ONNX export.

    With frozen weights and no gradient, CLIP's attention takes `_native_multi_head_attention`;
    the standard path computes the same attention with exportable ops.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@torch.no_grad()
def build_edge_model(model: SFRNet, class_texts: ClassTexts | None = None, cfg: ModelCfg | None = None) -> SFRNetEdge:
    """The deployable model for `class_texts` (default: the model's own classes), in eval mode.

    `cfg` is the trained model's ModelCfg (a checkpoint's, holding the score calibration and the
    normalisation used in training); the model's own when None.
    """
    model.eval()
    base = cfg if cfg is not None else model.cfg
    texts = class_texts if class_texts is not None else model.class_texts
    text = model.encode_texts(texts)
    adjacency = model.class_graph(texts) if class_texts is not None else model.adjacency
    extra = dict(base.extra)
    offset = float(extra.get("score_offset") or 0.0)
    temperature = float(extra.get("score_temperature") or DEFAULT_TEMPERATURE)
    known = set(extra.get("seen") or [])
    extra.update({
        "class_texts": texts.as_rows(),
        "class_texts_source": texts.source,
        "trained_classes": [c for c in texts.codes if c in known],
        "zero_shot_classes": [c for c in texts.codes if c not in known],
        "score_offset": offset,
        "score_temperature": temperature,
        "logits": "(score - score_offset) / score_temperature",
    })
    thresholds = base.thresholds if texts.codes == tuple(base.classes) else None
    edge_cfg = dataclasses.replace(base, classes=texts.codes, thresholds=thresholds, extra=extra)
    return SFRNetEdge(model.backbone, model.mef, model.gcn, text, adjacency, edge_cfg, offset, temperature).eval()


def for_export(loaded: Any, classes_file: str | Path | None = None) -> Any:
    """Swap an export's loaded SFR-Net for its edge model (a `LoadedModel` in, a `LoadedModel` out).

    `classes_file` is a class text file (see `class_texts`); None keeps the classes the model was
    built with. The export pipeline calls this for every task "zeroshot" model before tracing.
    """
    model = loaded.model
    if not isinstance(model, SFRNet):
        raise DataError(f"--classes applies to zero-shot models only; {loaded.cfg.name} is a {loaded.cfg.task} model")
    texts = load_class_texts(classes_file) if classes_file is not None else None
    edge = build_edge_model(model, texts, loaded.cfg)
    return dataclasses.replace(loaded, model=edge, cfg=edge.cfg)
