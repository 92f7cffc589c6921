"""The DETR-style label transformer of Query2Label and MA-Q2L.

Written out by hand (explicit attention logits) rather than with `nn.MultiheadAttention` so that
MA-Q2L's per-sample additive CAM mask has obvious semantics and the graph exports to ONNX as
plain MatMul/Softmax. Parameter layout follows `nn.MultiheadAttention` (packed `in_proj_weight`,
`out_proj`) so released Q2L/MA-Q2L state dicts map onto it by renaming modules only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sine_position_encoding(
    height: int,
    width: int,
    num_pos_feats: int = 1024,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
) -> Tensor:
    """DETR sine encoding of an `height x width` grid as `[1, height*width, 2*num_pos_feats]`.

    The first `num_pos_feats` channels encode the row, the rest the column; each half interleaves
    sin/cos of position / temperature^(2i/num_pos_feats). With `normalize` the positions run
    1/H .. 1 (times `scale`), so the encoding does not depend on the grid size.
    """
    ones = torch.ones(1, height, width)
    y_embed = ones.cumsum(1)
    x_embed = ones.cumsum(2)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    pos = torch.cat((pos_y, pos_x), dim=3)  # [1, H, W, 2F]
    return pos.flatten(1, 2)


class Attention(nn.Module):
    """Multi-head attention with explicit logits and an optional additive per-sample bias.

    `logit_bias` of shape `[B, Lq, Lk]` is added to the scaled logits of *every* head of sample b
    before the softmax. With the `[B, H, Lq, Lk]` layout used here this is a broadcast over the
    head axis, i.e. the equivalent of `repeat_interleave(H, dim=0)` in PyTorch's flattened
    `[B*H, Lq, Lk]` layout.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, logit_bias: Tensor | None = None) -> Tensor:
        """query `[B, Lq, D]`, key/value `[B, Lk, D]`, logit_bias `[B, Lq, Lk]` -> `[B, Lq, D]`."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))
        logits = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # [B, H, Lq, Lk]
        if logit_bias is not None:
            logits = logits + logit_bias.unsqueeze(1)  # same map for every head of its own sample
        attn = self.dropout(logits.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).flatten(2)
        return self.out_proj(out)


class FeedForward(nn.Module):
    """Linear -> ReLU -> dropout -> Linear (the DETR FFN)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer; positions are added to queries and keys only."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        qk = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(qk, qk, src)))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class DecoderLayer(nn.Module):
    """Q2L decoder layer: cross-attn -> norm -> [label self-attn -> norm] -> FFN -> norm.

    Q2L's default removes DETR's decoder self-attention; MA-Q2L adds label self-attention back,
    *after* the cross-attention (`label_self_attn=True`).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, label_self_attn: bool) -> None:
        super().__init__()
        self.cross_attn = Attention(dim, num_heads, dropout)
        self.norm_cross = nn.LayerNorm(dim)
        self.dropout_cross = nn.Dropout(dropout)
        self.label_attn: Attention | None = None
        if label_self_attn:
            self.label_attn = Attention(dim, num_heads, dropout)
            self.norm_label = nn.LayerNorm(dim)
            self.dropout_label = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.dropout_ffn = nn.Dropout(dropout)

    def forward(
        self, tgt: Tensor, memory: Tensor, query_pos: Tensor, pos: Tensor, cross_bias: Tensor | None = None
    ) -> Tensor:
        attended = self.cross_attn(tgt + query_pos, memory + pos, memory, logit_bias=cross_bias)
        tgt = self.norm_cross(tgt + self.dropout_cross(attended))
        if self.label_attn is not None:
            qk = tgt + query_pos
            tgt = self.norm_label(tgt + self.dropout_label(self.label_attn(qk, qk, tgt)))
        return self.norm_ffn(tgt + self.dropout_ffn(self.ffn(tgt)))


class LabelTransformer(nn.Module):
    """Encoder over image tokens + decoder of learned label queries (decoder input starts at 0)."""

    def __init__(
        self,
        dim: int = 2048,
        num_heads: int = 4,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 2,
        ffn_dim: int = 8192,
        dropout: float = 0.1,
        label_self_attn: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            EncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(dim, num_heads, ffn_dim, dropout, label_self_attn) for _ in range(num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)  # the encoder has no final norm, the decoder has one
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, pos: Tensor, query_embed: Tensor, cross_bias: Tensor | None = None) -> Tensor:
        """src `[B, HW, D]`, pos `[1, HW, D]`, query_embed `[K, D]`, cross_bias `[B, K, HW]` -> `[B, K, D]`."""
        memory = src
        for layer in self.encoder:
            memory = layer(memory, pos)
        query_pos = query_embed.unsqueeze(0).expand(src.shape[0], -1, -1)
        tgt = torch.zeros_like(query_pos)
        for layer in self.decoder:
            tgt = layer(tgt, memory, query_pos, pos, cross_bias)
        return self.decoder_norm(tgt)
