"""GR (generalised relational refining): a class graph from the class names and a small GCN on the scores.

The graph links two classes when the cosine of their short-name text embeddings (plain CLIP, i.e.
adapters off) is above a threshold (0.85). Self-loops are added and the matrix is normalised
symmetrically, D^-1/2 (A + I) D^-1/2, as in Kipf & Welling's GCN. The refiner treats each class's
score as a 1-d node feature, runs two graph convolutions (1 -> 64 -> 1, ReLU and dropout between)
and adds the result to the scores, so related classes can lend each other evidence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def build_adjacency(embeddings: torch.Tensor, threshold: float = 0.85) -> torch.Tensor:
    """Normalised adjacency [C, C] from class embeddings [C, D].

    A_ij = 1 when cos(e_i, e_j) > threshold and i != j; then A' = A + I and D^-1/2 A' D^-1/2 with
    D the row sums of A' (never 0 thanks to the self-loops).
    """
    e = F.normalize(embeddings.float(), dim=-1)
    linked = (e @ e.t() > threshold).float()
    linked.fill_diagonal_(0.0)
    a = linked + torch.eye(len(e), device=e.device)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class GraphConvolution(nn.Module):
    """A X W with no bias; X is [B, C, in], A is [C, C] (Kipf & Welling's layer)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return (adjacency @ x) @ self.weight


class GCNRefiner(nn.Module):
    """scores [B, C] -> scores + GCN(scores) with a 1 -> hidden -> 1 two-layer GCN."""

    def __init__(self, hidden: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.gc1 = GraphConvolution(1, hidden)
        self.gc2 = GraphConvolution(hidden, 1)
        self.drop = nn.Dropout(dropout)

    def correction(self, scores: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.gc1(scores.unsqueeze(-1), adjacency)))
        return self.gc2(h, adjacency).squeeze(-1)

    def forward(self, scores: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return scores + self.correction(scores, adjacency)
