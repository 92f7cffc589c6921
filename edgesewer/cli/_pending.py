"""Commands whose issue has not landed yet: they say so instead of failing obscurely."""

from __future__ import annotations

import typer

from edgesewer.cli._errors import one_line_errors
from edgesewer.errors import NotBuiltYet

# command name -> subject of the issue that builds it
PENDING: dict[str, str] = {}

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def add_pending(app: typer.Typer, name: str, subject: str) -> None:
    """Register `name` as a command that exits 1 naming the issue that will build it."""
    PENDING[name] = subject

    @one_line_errors
    def _pending(ctx: typer.Context) -> None:
        raise NotBuiltYet(f"`edgesewer {name}` is not built yet (issue: {subject})")

    app.command(name, context_settings=_EXTRA, help=f"[not built yet] {subject}")(_pending)
