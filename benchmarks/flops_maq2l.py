"""GFLOPs of MA-Q2L (ResNet-101) at 224/384/448/576 px next to the paper's figures.

    python benchmarks/flops_maq2l.py [--model ma-q2l-r101|q2l-r101]   (package installed, or PYTHONPATH=.)

Counted with `torch.utils.flop_counter.FlopCounterMode` on the meta device (no weights, no
memory, a few seconds). FlopCounterMode counts FLOPs = 2 x multiply-accumulates of conv and
matmul ops. Three columns are printed:
  - FLOPs: everything, the honest figure;
  - MACs: FLOPs / 2, the unit profilers such as thop call "FLOPs";
  - MACs w/o attn: MACs minus the attention modules (q/k/v/out projections and the two
    attention matmuls). This is what thop reports for a model using nn.MultiheadAttention,
    which thop does not count, and it reproduces the paper's 28.89 / 38.91 / 63.59 at
    384 / 448 / 576 to 0.01; so the paper's "GFLOPs" are thop MACs without attention, and its
    224-px figure (19.58) matches none of the counts (10.59 here; probably a typo).
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgesewer.models import q2l  # noqa: F401 - registers q2l-r101 / ma-q2l-r101
from edgesewer.models._registry import create_model

PAPER_GFLOPS = {224: 19.58, 384: 28.89, 448: 38.91, 576: 63.59}
ATTENTION_MODULES = ("self_attn", "cross_attn", "label_attn")


def count(model_name: str, img_size: int) -> tuple[int, int]:
    """(total FLOPs, FLOPs inside attention modules) of one forward pass at batch 1."""
    with torch.device("meta"):
        model = create_model(model_name, img_size=img_size).eval()
        x = torch.randn(1, 3, img_size, img_size)
    counter = FlopCounterMode(display=False)
    with counter:  # no torch.no_grad(): FlopCounterMode's module tracker needs autograd on
        model(x)
    per_module = counter.get_flop_counts()
    attention = sum(
        sum(ops.values()) for name, ops in per_module.items() if name.split(".")[-1] in ATTENTION_MODULES
    )
    return counter.get_total_flops(), attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ma-q2l-r101", choices=["ma-q2l-r101", "q2l-r101"])
    args = parser.parse_args()
    print(f"{args.model}, batch 1 (G = 1e9)")
    header = f"{'input':>6} {'GFLOPs':>9} {'GMACs':>9} {'GMACs w/o attn':>15} {'paper':>7} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for size, paper in PAPER_GFLOPS.items():
        flops, attention = count(args.model, size)
        macs, macs_no_attn = flops / 2e9, (flops - attention) / 2e9
        ratio = macs_no_attn / paper
        print(f"{size:>6} {flops / 1e9:>9.2f} {macs:>9.2f} {macs_no_attn:>15.2f} {paper:>7.2f} {ratio:>6.3f}")
    print("ratio = (GMACs w/o attn) / paper")


if __name__ == "__main__":
    main()
