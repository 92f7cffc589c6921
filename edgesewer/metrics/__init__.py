"""Benchmark metrics (numpy only, importable without torch)."""

from edgesewer.metrics.sewerml import (
    average_precision,
    evaluate_sewerml,
    format_sewerml_table,
    render_table_text,
    sewerml_report_text,
)

__all__ = [
    "average_precision",
    "evaluate_sewerml",
    "format_sewerml_table",
    "render_table_text",
    "sewerml_report_text",
]
