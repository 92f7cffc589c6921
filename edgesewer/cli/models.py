"""`edgesewer models`: the model zoo as a table (or JSON): name, task, input size, parameters, edge-sized, status.

"Edge-sized" means at most `EDGE_MAX_PARAMS` parameters (30M: about 60 MB of FP16 weights, which
an 8 GB Jetson holds next to the video pipeline at a few frames per second or better); the others
(MA-Q2L, the VideoPipe report's 1344 px super-image models, Video Swin-B) are for a workstation
GPU or for offline scoring. Models that count their parameters both ways (MA-Q2L: the paper's 143M
leaves out the transformer's attention modules) also show the count without attention.
"""

from __future__ import annotations

import json as json_lib
from typing import Annotated, Any

import typer

from edgesewer.cli._errors import one_line_errors


EDGE_MAX_PARAMS = 30_000_000


def _build_for_counting(name: str):
    import torch

    from edgesewer.models import get_entry

    factory = get_entry(name).factory
    try:
        with torch.device("meta"):
            return factory()
    except Exception:  # noqa: BLE001 - some initialisers need real storage; retry on the CPU
        return factory()


def attention_parameters(model) -> int:
    """Parameters inside attention modules (projections of q, k, v and the output): edgesewer's
    transformer `Attention` and `nn.MultiheadAttention` (outermost module only, nothing counted twice)."""
    from torch import nn

    from edgesewer.models.transformer import Attention

    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, (Attention, nn.MultiheadAttention)):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def count_parameters(name: str, without_attention: bool = False) -> int:
    """Parameters (trainable and frozen; buffers excluded) of a registered model with its defaults.

    Built on the meta device (no memory, no weights, nothing cached); falls back to a CPU build for
    factories that cannot run there. `without_attention` leaves out the attention modules' parameters
    (how the MA-Q2L paper counts its 143M).
    """
    model = _build_for_counting(name)
    total = sum(p.numel() for p in model.parameters())
    return total - attention_parameters(model) if without_attention else total


def zoo_rows() -> list[dict[str, Any]]:
    """One dict per registered model: name, task, input_size, frames (frame-stack video models, else None),
    params (int, or None if it cannot be built), params_without_attention (int for models counted both ways,
    else None), edge (bool or None), status."""
    from edgesewer.models import get_entry, list_models

    rows = []
    for name in list_models():
        entry = get_entry(name)
        status = entry.status
        params: int | None = None
        no_attention: int | None = None
        try:
            model = _build_for_counting(name)
            params = sum(p.numel() for p in model.parameters())
            if entry.cfg.extra.get("count_without_attention"):
                no_attention = params - attention_parameters(model)
            del model
        except Exception as exc:  # noqa: BLE001 - one broken family must not hide the rest of the zoo
            params, status = None, f"cannot build: {type(exc).__name__}"
        rows.append({
            "name": name,
            "task": entry.cfg.task,
            "input_size": entry.cfg.input_size,
            "frames": entry.cfg.input_shape[0] if len(entry.cfg.input_shape) == 4 else None,  # [T, C, S, S]
            "params": params,
            "params_without_attention": no_attention,
            "edge": None if params is None else params <= EDGE_MAX_PARAMS,
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
    columns = (("name", "left"), ("task", "left"), ("input", "right"), ("params", "right"), ("edge", "left"),
               ("status", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        params = _millions(row["params"])
        if row["params_without_attention"] is not None:
            params += f" ({_millions(row['params_without_attention'])} w/o attention)"
        edge = "?" if row["edge"] is None else "yes" if row["edge"] else "no"
        size = f"{row['frames']}x{row['input_size']}" if row["frames"] else str(row["input_size"])
        table.add_row(row["name"], row["task"], size, params, edge, row["status"])
    Console().print(table)
    Console().print(f"edge: at most {EDGE_MAX_PARAMS / 1e6:.0f}M parameters (fits an 8 GB Jetson next to the "
                    "video pipeline); w/o attention: without the transformer's attention modules, as the MA-Q2L "
                    "paper counts (143M)", highlight=False)
