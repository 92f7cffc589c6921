"""Options that decide what counts as a detection, shared by `edgesewer run` and `edgesewer batch` (one
wording, one default: a batch over an archive must decide as a live run does)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ThresholdOpt = Annotated[
    Optional[str], typer.Option("--threshold", help="override the sidecar's thresholds: 0.4 or RB=0.3,OB=0.6")
]
SmoothOpt = Annotated[str, typer.Option("--smooth", help="temporal smoothing: none, ema[:ALPHA] or kofn:K/N")]
SegThresholdOpt = Annotated[float, typer.Option("--seg-threshold", help="crack probability threshold")]
CrackMinAreaOpt = Annotated[
    float, typer.Option("--crack-min-area", help="ignore crack blobs smaller than this (frame pixels)")
]
