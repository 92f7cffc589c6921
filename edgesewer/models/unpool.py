"""2x2 max-pooling with "switches" and the matching unpooling, built from standard operators.

SegNet-style decoders upsample with the encoder's pooling indices (`max_unpool2d`). TensorRT has
no MaxUnpool layer and ONNX exporters cannot carry the indices through, so the switches are kept
as a one-hot mask over the four positions of each 2x2 window instead:

    switches[n, c, k, i, j] = 1  iff  window (i, j) has its first maximum at position k,
    k in row-major order (0,0), (0,1), (1,0), (1,1)

Unpooling multiplies the decoder input by that mask and interleaves the four planes back with
`pixel_shuffle` (ONNX DepthToSpace). The graph holds only Slice, Equal, Mul, Sub, Concat,
Reshape and DepthToSpace. Taking the *first* maximum in row-major order is the rule PyTorch's
CPU `max_pool2d(..., return_indices=True)` uses, so the result equals `max_unpool2d` even
when a window holds equal values (e.g. all zeros after a ReLU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _quadrants(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four positions of every 2x2 window as planes of shape [N, C, H/2, W/2]."""
    return x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]


def pool_with_switches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2/stride-2 max-pooling; returns (pooled [N,C,H/2,W/2], switches [N,C,4,H/2,W/2]).

    H and W must be even. The switches are a float one-hot mask (no gradient flows through them,
    as with pooling indices).
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"pool_with_switches needs even height and width, got {tuple(x.shape[-2:])}")
    pooled = F.max_pool2d(x, kernel_size=2, stride=2)
    with torch.no_grad():
        a, b, c, d = _quadrants(x)
        hit_a = (a == pooled).to(x.dtype)
        # Later positions only win if no earlier position already holds the maximum.
        hit_b = (b == pooled).to(x.dtype) * (1 - hit_a)
        hit_c = (c == pooled).to(x.dtype) * (1 - hit_a) * (1 - hit_b)
        hit_d = (1 - hit_a) * (1 - hit_b) * (1 - hit_c)
        switches = torch.stack([hit_a, hit_b, hit_c, hit_d], dim=2)
    return pooled, switches


def unpool_with_switches(x: torch.Tensor, switches: torch.Tensor) -> torch.Tensor:
    """Place every value of x [N,C,h,w] at its window's max position; zeros elsewhere -> [N,C,2h,2w]."""
    planes = x.unsqueeze(2) * switches  # [N, C, 4, h, w]
    return F.pixel_shuffle(planes.flatten(1, 2), 2)
