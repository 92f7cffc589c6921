"""`edgesewer demo`: everything that exists, end to end, on the synthetic set."""

from __future__ import annotations


def demo_command() -> None:
    """Run the end-to-end demo on synthetic data."""
    raise NotImplementedError
