"""`edgesewer models`: the model zoo as a table (or JSON): name, task, input size, parameters, status."""

from __future__ import annotations

import json as json_lib
from typing import Annotated, Any

import typer

from edgesewer.cli._errors import one_line_errors


def count_parameters(name: str) -> int:
    """Parameters (trainable and frozen; buffers excluded) of a registered model with its defaults.

    Built on the meta device (no memory, no weights, nothing cached); falls back to a CPU build for
    factories that cannot run there.
    """
    import torch

    from edgesewer.models import get_entry

    factory = get_entry(name).factory
    try:
        with torch.device("meta"):
            model = factory()
    except Exception:  # noqa: BLE001 - some initialisers need real storage; retry on the CPU
        model = factory()
    return sum(p.numel() for p in model.parameters())


def zoo_rows() -> list[dict[str, Any]]:
    """One dict per registered model: name, task, input_size, params (int, or None if it cannot be built), status."""
    from edgesewer.models import get_entry, list_models

    rows = []
    for name in list_models():
        entry = get_entry(name)
        status = entry.status
        try:
            params: int | None = count_parameters(name)
        except Exception as exc:  # noqa: BLE001 - one broken family must not hide the rest of the zoo
            params, status = None, f"cannot build: {type(exc).__name__}"
        rows.append({
            "name": name,
            "task": entry.cfg.task,
            "input_size": entry.cfg.input_size,
            "params": params,
            "status": status,
        })
    return rows


def _millions(params: int | None) -> str:
    return "?" if params is None else f"{params / 1e6:.2f}M"


@one_line_errors
def models_command(
    json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of the table.")] = False,
) -> None:
    """List the model zoo: every name `train`, `export` and `run` accept."""
    rows = zoo_rows()
    if json:
        typer.echo(json_lib.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgesewer model zoo")
    columns = (("name", "left"), ("task", "left"), ("input", "right"), ("params", "right"), ("status", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(row["name"], row["task"], str(row["input_size"]), _millions(row["params"]), row["status"])
    Console().print(table)
