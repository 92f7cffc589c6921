"""Accuracy versus FPS, one panel per accuracy metric (classifiers: F2_CIW, segmenter: ODS), with the
Pareto front marked: the rows no other row beats on both speed and accuracy.

Without accuracy (random weights) the panel shows batch-1 FPS per row instead, so the picture still
says something. matplotlib is imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgesewer.benchmark.measure import BenchmarkRow


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when both coordinates are to be maximised, by increasing x.

    A point is dominated when another is >= on both coordinates and > on at least one; exact
    duplicates of a front point are all kept.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox >= x and oy >= y and (ox > x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _label(row: BenchmarkRow) -> str:
    return f"{row.model} {row.precision}" + ("" if row.backend == "ort" else f" [{row.backend}]")


def plot_accuracy_vs_fps(rows: Sequence[BenchmarkRow], path: Path, title: str = "edgesewer benchmark") -> Path:
    """Write the PNG; raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.ok and r.fps_b1]
    panels: dict[str, list[BenchmarkRow]] = {}
    for row in timed:
        headline = row.headline()
        if headline is not None:
            panels.setdefault(headline[0], []).append(row)
    speed_only = [r for r in timed if r.headline() is None and not r.backend.startswith("torch")]
    count = max(1, len(panels))
    fig, axes = plt.subplots(1, count, figsize=(6.5 * count, 4.8), squeeze=False)
    for ax, (metric, members) in zip(axes[0], panels.items()):
        _scatter(ax, metric, members)
    if not panels:
        _bars(axes[0][0], speed_only)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scatter(ax, metric: str, rows: list[BenchmarkRow]) -> None:
    points = [(r.fps_b1, 100.0 * r.headline()[1]) for r in rows]  # type: ignore[index]
    front = pareto_front(points)
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=2, label="model x precision")
    for row, (x, y) in zip(rows, points):
        ax.annotate(_label(row), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red", marker="o",
            markerfacecolor="none", markersize=11, zorder=3, label="Pareto front")
    ax.set_xlabel("FPS (batch 1, network only)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def _bars(ax, rows: list[BenchmarkRow]) -> None:
    if not rows:
        ax.text(0.5, 0.5, "no row could be timed", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [_label(r) for r in rows]
    ax.barh(labels, [r.fps_b1 for r in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("FPS (batch 1, network only)")
    ax.set_title("accuracy n/a (random weights or no labelled set): speed only", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
