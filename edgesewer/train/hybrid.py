"""Hybrid pretraining (DINO-SSL paper): the DINO loss and the supervised multi-label loss at once.

A pretraining stage like DINO's (`edgesewer pretrain vit-t-dino --mode hybrid`), then fine-tuning
as usual from its `backbone.pt`. The student ViT embeds the two global views of each labelled
image; a DINO head gets the cross-view self-distillation loss against the EMA teacher and a linear
classifier on the same embedding gets the supervised loss on both views:
`loss = DINO + dino.supervised_weight * supervised` (the recipe's `loss` section, CIW-weighted BCE
by default). Everything else is DINO pretraining's: schedules, teacher momentum, RankMe of the
teacher's embeddings on validation images (the paper's Table 3 reports it for both stages).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from edgesewer.data.images import read_image
from edgesewer.data.sewerml import SewerMLSplit
from edgesewer.errors import DataError

PRETRAIN_MODES = ("dino", "hybrid")


class HybridDINO(nn.Module):
    """A DINO student/teacher pair plus a linear classifier on the student's embedding.

    `forward([view1, view2])` -> {"student": [2B, K], "teacher": [2B, K], "logits": [2B, classes]},
    view-major like `DINOWrapper`. `student`, `teacher`, `update_teacher` and
    `backbone_state_dict` are the wrapped DINO pair's, so DINO's callbacks and RankMe apply as they are.
    """

    def __init__(self, dino: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.dino = dino
        embed_dim = int(dino.student.backbone.embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def student(self) -> nn.Module:
        return self.dino.student

    @property
    def teacher(self) -> nn.Module:
        return self.dino.teacher

    def update_teacher(self, momentum: float) -> None:
        self.dino.update_teacher(momentum)

    def backbone_state_dict(self, which: str = "teacher") -> dict[str, Tensor]:
        return self.dino.backbone_state_dict(which)

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        batch = torch.cat(list(views), dim=0)
        embedding = self.dino.student.backbone(batch)
        with torch.no_grad():
            teacher = self.dino.teacher(batch)
        return {"student": self.dino.student.head(embedding), "teacher": teacher,
                "logits": self.classifier(embedding)}


class HybridLoss(nn.Module):
    """DINO(student, teacher) + weight * supervised(logits of both views); the DINO centre lives in the model."""

    def __init__(self, dino_loss: nn.Module, supervised: nn.Module, weight: float) -> None:
        super().__init__()
        self.supervised = supervised
        self.weight = float(weight)
        self.epoch = 0
        self._dino_loss = [dino_loss]  # a list: the model owns it (and checkpoints its centre)
        self.last: dict[str, float] = {}

    def forward(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        ssl = self._dino_loss[0](outputs["student"], outputs["teacher"], self.epoch)
        sup = self.supervised(outputs["logits"].float(), targets.float().repeat(2, 1))
        self.last = {"dino": float(ssl.detach()), "supervised": float(sup.detach())}
        return ssl + self.weight * sup


class LabelledTwoViews(Dataset):
    """(two augmented views, the 17 labels) per image; an unreadable image is replaced by the next one."""

    def __init__(self, split: SewerMLSplit, transform: Any) -> None:
        if split.labels is None:
            raise DataError(f"{split.csv_path}: has no label columns; hybrid pretraining needs the 17 Sewer-ML codes")
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[list[Tensor], Tensor]:
        n = len(self.split)
        for step in range(min(n, 64)):
            j = (i + step) % n
            try:
                image = read_image(self.split.image_path(j))
            except DataError:
                continue
            return self.transform(image), torch.as_tensor(self.split.labels[j], dtype=torch.float32)
        raise DataError(f"{self.split.image_dir}: 64 consecutive images are unreadable")
