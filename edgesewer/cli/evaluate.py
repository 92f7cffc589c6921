"""`edgesewer eval`: Sewer-ML metrics for a score CSV (and, later, for a checkpoint)."""

from __future__ import annotations


def eval_command() -> None:
    """Score predictions against Sewer-ML ground truth."""
    raise NotImplementedError
