"""`edgesewer data ...`: dataset tools (synthetic generator, checks)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dataset tools: generate the synthetic sewer set, check real Sewer-ML folders.", no_args_is_help=True)
