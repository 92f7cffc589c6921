"""`edgesewer demo`: everything that exists, end to end, on the synthetic set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgesewer.cli._errors import one_line_errors


@one_line_errors
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Where data, runs, artifacts and reports go.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized: smaller data and shorter schedules (~6 min on 2 cores).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the synthetic data and training.")] = 0,
) -> None:
    """Generate synthetic sewer data, train vit-t-dino and scnet briefly, export, run live, benchmark."""
    from edgesewer.demo import FULL, QUICK, run_demo

    run_demo(out, QUICK if quick else FULL, seed=seed)
