"""SFR-Net (steering-fusion-refining network) for multi-label zero-shot sewer defect classification.

Frozen CLIP image and text encoders with RS adapters (`clip_backbone`), the MEF global + local
scores (`mef`) and the GR graph refiner (`graph`). A class is whatever has a description in the
class text file: scoring a class the model was not trained on only needs its text embedding.

`forward(images, classes=None)` scores the classes whose indices are given (all by default; the
zero-shot trainer sets `active_classes` to the seen ones). The class graph of a subset is the
matching block of the full normalised adjacency, as in the reference implementation.

Registered as `sfr-net` (CLIP ViT-B/16 at 224; OpenAI's weights by default, from the local cache,
see `clip_backbone.build_clip`) and `sfr-net-tiny` (a CPU-sized CLIP of the same code at 64 px, for
tests and smoke runs, never pretrained). Ablation switches, passed like any factory argument
(recipe `model.kwargs`): `mef_local=False` keeps only MEF's global score, `graph_threshold` sets the
class graph's cosine cut.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from edgesewer.errors import DataError
from edgesewer.modelcfg import ModelCfg
from edgesewer.models._registry import register_model
from edgesewer.models.sfrnet.adapters import ADAPTER_KEY, adapters_disabled
from edgesewer.models.sfrnet.class_texts import ClassTexts, load_authors_texts, load_class_texts
from edgesewer.models.sfrnet.clip_backbone import (
    CLIP_ARCHS,
    CLIP_MEAN,
    CLIP_STD,
    ClipBackbone,
    ClipTokenizer,
    build_clip,
)
from edgesewer.models.sfrnet.graph import GCNRefiner, build_adjacency
from edgesewer.models.sfrnet.mef import MEFHead
from edgesewer.taxonomy import SEWER_CODES, ZS_SEEN, ZS_UNSEEN

GRAPH_THRESHOLD = 0.85
_PAPER = "SFR-Net: Steering-Fusion-Refining Network in Multi-label Zero-Shot Sewer Defect Detection (CVPR 2026)"


class SFRNet(nn.Module):
    """Zero-shot multi-label classifier: scores [B, C] for the images and the model's class texts."""

    def __init__(self, backbone: ClipBackbone, class_texts: ClassTexts, cfg: ModelCfg,
                 graph_threshold: float = GRAPH_THRESHOLD, mef_blocks: int = 2, mef_dropout: float = 0.1,
                 gcn_hidden: int = 64, gcn_dropout: float = 0.5, mef_local: bool = True) -> None:
        super().__init__()
        dim = backbone.embed_dim
        self.backbone = backbone
        self.mef = MEFHead(dim, 2 * dim, mef_blocks, mef_dropout, local=mef_local)  # ViT-B/16: 512 -> 1024 -> 512
        self.gcn = GCNRefiner(gcn_hidden, gcn_dropout)
        self.graph_threshold = graph_threshold
        self.class_texts = class_texts
        self.tokenizer = ClipTokenizer()
        self.register_buffer("text_tokens", self.tokenizer(class_texts.texts, class_texts.where("text")),
                             persistent=False)
        self.register_buffer("adjacency", self.class_graph(class_texts))
        self.active_classes: list[int] | None = None
        self.cfg = cfg

    # ------------------------------------------------------------------ text side (run once on a host)
    @torch.no_grad()
    def class_graph(self, texts: ClassTexts) -> torch.Tensor:
        """Normalised adjacency of `texts`' short names, embedded by plain CLIP (adapters off)."""
        tokens = self.tokenizer(texts.names, texts.where("name")).to(self._device())
        was_training = self.backbone.training
        self.backbone.eval()
        with adapters_disabled(self.backbone):
            names = self.backbone.encode_text(tokens)
        self.backbone.train(was_training)
        return build_adjacency(names, self.graph_threshold)

    def encode_texts(self, texts: ClassTexts) -> torch.Tensor:
        """Description embeddings [C, D] of any class texts, through the adapted text encoder."""
        tokens = self.tokenizer(texts.texts, texts.where("text")).to(self._device())
        return self.backbone.encode_text(tokens)

    def class_embeddings(self, classes: Sequence[int] | None = None) -> torch.Tensor:
        """Description embeddings [C', D] of the model's own classes (all, or the given indices)."""
        tokens = self.text_tokens if classes is None else self.text_tokens[list(classes)]
        return self.backbone.encode_text(tokens)

    def class_adjacency(self, classes: Sequence[int] | None = None) -> torch.Tensor:
        if classes is None:
            return self.adjacency
        idx = torch.as_tensor(list(classes), device=self.adjacency.device)
        return self.adjacency[idx][:, idx]

    # ------------------------------------------------------------------ image side
    def score(self, tokens: torch.Tensor, text: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """Final scores [B, C]: MEF (global + local) refined by the GCN on `adjacency`."""
        return self.gcn(self.mef(tokens, text), adjacency)

    def forward(self, images: torch.Tensor, classes: Sequence[int] | None = None) -> torch.Tensor:
        classes = classes if classes is not None else self.active_classes
        tokens = self.backbone.image_tokens(images)
        return self.score(tokens, self.class_embeddings(classes), self.class_adjacency(classes))

    # ------------------------------------------------------------------ training helpers
    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.backbone.named_parameters() if ADAPTER_KEY in n and p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in (*self.mef.parameters(), *self.gcn.parameters()) if p.requires_grad]

    def class_indices(self, codes: Sequence[str]) -> list[int]:
        missing = [c for c in codes if c not in self.class_texts.codes]
        if missing:
            raise DataError(f"{self.class_texts.source}: no class texts for {', '.join(missing)}")
        return [self.class_texts.codes.index(c) for c in codes]

    def _device(self) -> torch.device:
        return next(self.backbone.parameters()).device


def _sfrnet_cfg(name: str, arch: str) -> ModelCfg:
    return ModelCfg(
        name=name,
        task="zeroshot",
        input_size=CLIP_ARCHS[arch].image_size,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        classes=SEWER_CODES,
        interpolation="bicubic",
        paper=_PAPER,
        extra={"arch": arch, "seen": list(ZS_SEEN), "unseen": list(ZS_UNSEEN), "graph_threshold": GRAPH_THRESHOLD,
               "mef_local": True},
    )


def resolve_class_texts(class_texts: Any) -> ClassTexts:
    """A ClassTexts from a path, `[[code, name, text], ...]` rows (checkpoints), an instance, or None (shipped).

    A path ending in `_de.txt`/`_ep.txt` is read in the SFR-Net authors' format; so is a mapping
    `{texts: <set>_de.txt, phrases: <set>_ep.txt, classes: [seen.txt, unseen.txt]}` (phrases and
    classes optional, see `class_texts.load_authors_texts`).
    """
    if class_texts is None or isinstance(class_texts, (str, bytes)) or hasattr(class_texts, "__fspath__"):
        return load_class_texts(class_texts)
    if isinstance(class_texts, ClassTexts):
        return class_texts
    if isinstance(class_texts, dict):
        unknown = sorted(set(class_texts) - {"texts", "phrases", "classes"})
        if unknown or "texts" not in class_texts:
            raise DataError(f"class_texts: expected {{texts: <set>_de.txt, phrases: <set>_ep.txt, classes: "
                            f"[seen.txt, unseen.txt]}}, got keys {', '.join(map(str, class_texts)) or 'none'}")
        return load_authors_texts(class_texts["texts"], class_texts.get("phrases"), class_texts.get("classes"))
    return ClassTexts.from_rows(class_texts)


def _building_on_meta() -> bool:
    """True inside `with torch.device("meta")` (e.g. counting parameters): there are no weights to load."""
    get_default = getattr(torch, "get_default_device", None)
    return get_default is not None and get_default().type == "meta"


def create_sfrnet(name: str, arch: str, pretrained: bool = False, class_texts: Any = None,
                  img_size: int | None = None, adapter_bottleneck: int = 128, adapter_dropout: float = 0.1,
                  graph_threshold: float = GRAPH_THRESHOLD, mef_local: bool = True, **kwargs: Any) -> SFRNet:
    """Build SFR-Net on CLIP `arch`; class texts from a file, rows or the shipped Sewer-ML file.

    `pretrained` loads OpenAI's CLIP weights from the local cache (`ModelNotFound` naming the cache
    and the download command when they are not there); `mef_local=False` is MEF without its local
    path; `graph_threshold` is the cosine above which two class names are linked in the graph.
    """
    if kwargs:
        raise TypeError(f"{name}: unexpected argument(s) {', '.join(sorted(kwargs))}")
    size = CLIP_ARCHS[arch].image_size
    if img_size is not None and int(img_size) != size:
        raise DataError(f"{name}: input size is fixed at {size} by CLIP's position embedding, not {img_size}")
    texts = resolve_class_texts(class_texts)
    load_weights = bool(pretrained) and not _building_on_meta()
    backbone = ClipBackbone(build_clip(arch, load_weights), adapter_bottleneck, adapter_dropout)
    cfg = _sfrnet_cfg(name, arch)
    cfg = dataclasses.replace(cfg, classes=texts.codes, extra={
        **cfg.extra, "graph_threshold": graph_threshold, "mef_local": bool(mef_local),
        "pretrained": "openai" if load_weights else None, "class_texts": texts.as_rows()})
    return SFRNet(backbone, texts, cfg, graph_threshold=graph_threshold, mef_local=mef_local)


@register_model(_sfrnet_cfg("sfr-net", "ViT-B-16"))
def sfr_net(pretrained: bool = True, **kwargs: Any) -> SFRNet:
    """SFR-Net on CLIP ViT-B/16 (224 px) with OpenAI's CLIP weights (from the local cache) unless `pretrained=False`.

    On a random CLIP the frozen towers mean nothing, so the weights are the default; `pretrained=False`
    is for plumbing tests and for rebuilding a checkpoint (which carries every weight itself).
    """
    return create_sfrnet("sfr-net", "ViT-B-16", pretrained=pretrained, **kwargs)


@register_model(_sfrnet_cfg("sfr-net-tiny", "tiny"))
def sfr_net_tiny(**kwargs: Any) -> SFRNet:
    """SFR-Net on a CPU-sized CLIP (64 px, 2 blocks per tower); tests and smoke runs, never pretrained."""
    return create_sfrnet("sfr-net-tiny", "tiny", **kwargs)
