"""MEF (multi-granularity evidence fusion): a global and a local image-text score per class.

Global: cosine between the image's class token and each class's text embedding.
Local: each class attends over the patches by their cosine to its text (softmax over patches),
the attended patch features go through two residual MLP blocks and a linear layer to one number.
The initial score of a class is global + local; there is no learnt logit scale (as in SFR-Net).
`local=False` drops the local path (the paper's MEF ablation): the score is the global cosine alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualMLPBlock(nn.Module):
    """Pre-LN residual MLP: x + Drop(Linear(Drop(GELU(Linear(LN(x))))))."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm(x))))))


class MEFHead(nn.Module):
    """Scores [B, C] from image tokens [B, 1 + N, D] and class text embeddings [C, D]."""

    def __init__(self, dim: int = 512, hidden: int = 1024, blocks: int = 2, dropout: float = 0.1,
                 local: bool = True) -> None:
        super().__init__()
        self.local = bool(local)
        if self.local:  # without it there are no local parameters at all (nothing to train or export)
            self.local_mlp = nn.Sequential(*[ResidualMLPBlock(dim, hidden, dropout) for _ in range(blocks)])
            self.local_out = nn.Linear(dim, 1)

    @staticmethod
    def global_scores(cls_token: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B, C] of normalised class tokens [B, D] and normalised texts [C, D]."""
        return cls_token @ text.t()

    def local_features(self, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Per class, the patch features pooled with softmax-over-patches weights: [B, C, D]."""
        affinity = torch.softmax(patches @ text.t(), dim=1)  # [B, N, C], each class sums to 1 over patches
        return affinity.transpose(1, 2) @ patches

    def forward(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tokens = F.normalize(tokens, dim=-1)
        text = F.normalize(text, dim=-1)
        glob = self.global_scores(tokens[:, 0], text)
        if not self.local:
            return glob
        pooled = self.local_features(tokens[:, 1:], text)
        local = self.local_out(self.local_mlp(pooled)).squeeze(-1)
        return glob + local
