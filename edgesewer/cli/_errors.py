"""Turn EdgesewerError into a one-line message and exit code 1.

Set EDGESEWER_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

from edgesewer.errors import EdgesewerError

F = TypeVar("F", bound=Callable)


def one_line_errors(fn: F) -> F:
    """Decorator for CLI commands: user errors become `error: ...` on stderr, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgesewerError as exc:
            if os.environ.get("EDGESEWER_DEBUG"):
                raise
            message = " ".join(str(exc).split())  # one line, whatever the message held
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
