"""`--trust-checkpoint`: the one option that lets a command unpickle a checkpoint's arbitrary objects.

Checkpoints are read with torch's weights-only loader (see `edgesewer.train.checkpoint.read_torch_file`);
a file holding anything more is refused unless the user passes this flag for a file they trust.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Iterator

import typer

TrustCheckpointOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint",
    help="Allow checkpoints that hold pickled Python objects (unpickling can run code: only for files you trust).")]


@contextlib.contextmanager
def checkpoint_trust(trust: bool) -> Iterator[None]:
    """Run the command's body with unsafe checkpoint loading allowed when `trust` is set (torch imported lazily)."""
    if not trust:
        yield
        return
    from edgesewer.train.checkpoint import trusting_checkpoints

    with trusting_checkpoints():
        yield
