"""The benchmark's outputs: a Markdown table with the machine and the method on top, CSV, JSON, plot.

`benchmark.md` is what a person reads (and what the README quotes); `benchmark.csv` has one flat
row per model x precision x backend; `benchmark.json` holds everything, including per-batch
throughput and the machine description.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesewer.benchmark.machine import machine_lines
from edgesewer.benchmark.measure import ACCURACY_KEYS, ALL_ACCURACY_KEYS, BenchmarkRow

if TYPE_CHECKING:
    from edgesewer.benchmark.sweep import BenchmarkResult

FORMAT = "edgesewer-benchmark/1"
# Flat CSV columns, in order; per-batch throughput columns (fps_bN) are added per run.
CSV_COLUMNS = (
    "model", "backend", "precision", "status", "task", "input_size", "threads", "size_mb", *ALL_ACCURACY_KEYS,
    "accuracy_images", "accuracy_via", "accuracy_data", "calibration_images", "calibration", "p50_ms", "p90_ms", "p99_ms",
    "mean_ms", "runs", "warmup_runs", "warmup_s", "fps_b1", "best_batch", "fps_best", "pipeline_fps",
    "pipeline_network_fps", "pipeline_frames", "peak_mem_mb", "vs_eager", "weights", "artifact", "notes",
)
MD_HEADER = ("Model", "Backend", "Precision", "Status", "Size MB", "Accuracy", "Calib. images", "p50 / p90 / p99 ms",
             "Runs", "FPS b1", "FPS best (batch)", "Pipeline FPS", "Peak MB", "× eager")


def row_record(row: BenchmarkRow, batch_sizes: list[int]) -> dict[str, Any]:
    """One flat CSV record: accuracy keys and per-batch throughput spread into columns."""
    record = {k: v for k, v in asdict(row).items() if k in CSV_COLUMNS}
    for key in ALL_ACCURACY_KEYS:
        record[key] = (row.accuracy or {}).get(key)
    record["notes"] = "; ".join(row.notes)
    for batch in batch_sizes:
        record[f"fps_b{batch}"] = row.throughput.get(batch)
    return record


def csv_columns(batch_sizes: list[int]) -> list[str]:
    return [*CSV_COLUMNS, *(f"fps_b{b}" for b in batch_sizes if f"fps_b{b}" not in CSV_COLUMNS)]


def write_csv(result: "BenchmarkResult", path: Path) -> Path:
    batches = result.settings["batch_sizes"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(batches))
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: _csv_value(v) for k, v in row_record(row, batches).items()})
    return path


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return round(value, 4) if isinstance(value, float) else value


def as_json(result: "BenchmarkResult") -> dict[str, Any]:
    rows = []
    for row in result.rows:
        item = asdict(row)
        item["throughput"] = {str(k): v for k, v in row.throughput.items()}
        rows.append(item)
    return {"format": FORMAT, "started": result.started, "finished": result.finished, "machine": result.machine,
            "settings": result.settings, "rows": rows}


def write_json(result: "BenchmarkResult", path: Path) -> Path:
    path.write_text(json.dumps(as_json(result), indent=2, default=str) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ Markdown
def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def accuracy_cell(row: BenchmarkRow) -> str:
    if row.accuracy:
        keys = ACCURACY_KEYS.get(row.task or "", tuple(row.accuracy))
        return " · ".join(f"{k} {100 * row.accuracy[k]:.2f}" for k in keys if k in row.accuracy)
    if row.backend.startswith("torch"):
        return "(as fp32)"
    if row.accuracy_via and row.accuracy_via.startswith("n/a"):
        return row.accuracy_via
    return "n/a"


def markdown_row(row: BenchmarkRow) -> list[str]:
    if not row.ok:
        return [row.model, row.backend, row.precision, row.status.replace("|", "\\|")] + [""] * (len(MD_HEADER) - 4)
    latency = f"{_num(row.p50_ms, 2)} / {_num(row.p90_ms, 2)} / {_num(row.p99_ms, 2)}"
    best = f"{_num(row.fps_best)} ({row.best_batch})" if row.fps_best is not None else "n/a"
    calib = row.calibration or ("" if row.precision in ("fp32", "fp16") else "n/a")
    return [row.model, row.backend, row.precision, "ok", _num(row.size_mb), accuracy_cell(row), calib, latency,
            str(row.runs or ""), _num(row.fps_b1), best, _num(row.pipeline_fps), _num(row.peak_mem_mb, 0),
            f"{row.vs_eager:.2f}×" if row.vs_eager is not None else "n/a"]


def accuracy_sets(rows: list[BenchmarkRow]) -> str:
    """The labelled sets really scored, per model ("" when no row was scored)."""
    sets = dict.fromkeys(f"{row.model}: {row.accuracy_data}" for row in rows if row.accuracy_data)
    return "; ".join(sets)


def markdown(result: "BenchmarkResult", plot_name: str | None = None) -> str:
    """The report: machine, method, the table, notes per row, and the plot."""
    s = result.settings
    lines = ["# edgesewer benchmark", "", f"Run {result.started} → {result.finished}.", "", "## Machine", ""]
    lines += [f"- {line}" for line in machine_lines(result.machine)]
    lines += ["", "## Method", "",
              f"- Models {', '.join(s['models'])}; precisions {', '.join(s['precisions'])}; backend {s['backend']}; "
              f"{s['threads']} thread(s) for ONNX Runtime and PyTorch alike; weights: {s['weights']}.",
              f"- Latency: batch 1, random input; warm-up >= {s['warmup_s']:g} s, then timed until >= "
              f"{s['min_iters']} runs and >= {s['min_s']:g} s (at most {s['max_s']:g} s). p50 is the median over "
              "the number of timed runs in column *Runs*; p90/p99 from the same runs.",
              f"- Throughput: inferences / timed wall clock at batch sizes {', '.join(map(str, s['batch_sizes']))}; "
              "*FPS best* is the best of them (batch in brackets).",
              f"- Pipeline FPS: `edgesewer run` (decode → preprocess → infer → postprocess → events/report, headless) "
              f"on {s['video'] or 'no video'}, at most {s['pipeline_frames']} frames.",
              "- Peak MB: resident-memory high-water mark of a fresh process that loads the model and runs 3 "
              "batch-1 inferences, above its level before loading (host memory only, not GPU memory).",
              "- × eager: PyTorch eager p50 / this row's p50, both measured in this run (> 1 = faster than eager).",
              f"- Accuracy on {accuracy_sets(result.rows) or s['data']} (Sewer-ML: F2_CIW, F1_Normal, mAP at threshold "
              "0.5; cracks: ODS, OIS, AUPRC, IoU, region F1 at native resolution through the runtime's tiling), "
              f"at most {s['accuracy_images']} images; INT8 rows list their calibration image count.", ""]
    lines += ["## Results", "", "| " + " | ".join(MD_HEADER) + " |", "|" + "---|" * len(MD_HEADER)]
    lines += ["| " + " | ".join(markdown_row(row)) + " |" for row in result.rows]
    notes = [f"- {row.model} {row.precision} ({row.backend}): {'; '.join(row.notes)}"
             for row in result.rows if row.ok and row.notes]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", f"![accuracy versus FPS]({plot_name})" if plot_name
              else "(no plot: matplotlib is not installed; `pip install matplotlib`)"]
    return "\n".join(lines) + "\n"


def table_console():
    """A Rich console for the trade-off table: the terminal's width, or 150 columns in logs and CI
    (not terminals), where Rich's 80-column default would fold every row."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150)


def console_table(result: "BenchmarkResult"):
    """A rich Table of the rows that ran (narrower than the Markdown one); failed rows are listed apart."""
    from rich.table import Table

    table = Table(title=f"edgesewer benchmark: {result.settings['backend']}, {result.settings['threads']} thread(s), "
                        "ms at batch 1", title_justify="left")
    for name in ("model", "precision", "MB", "accuracy", "p50/p99 ms", "FPS", "best FPS", "pipe FPS", "peak MB",
                 "×eager"):
        table.add_column(name, justify="left" if name in ("model", "precision", "accuracy") else "right")
    for row in result.rows:
        if not row.ok:
            continue
        headline = row.headline()
        accuracy = f"{headline[0]} {100 * headline[1]:.1f}" if headline else "n/a"
        precision = "eager" if row.backend.startswith("torch") else row.precision
        if row.calibration_images is not None:
            precision += f" ({row.calibration_images} cal.)"
        elif row.calibration == "dynamic":
            precision += " (dyn.)"
        best = f"{_num(row.fps_best)} b{row.best_batch}" if row.fps_best is not None else "n/a"
        table.add_row(row.model, precision, _num(row.size_mb), accuracy, f"{_num(row.p50_ms)}/{_num(row.p99_ms)}",
                      _num(row.fps_b1), best, _num(row.pipeline_fps), _num(row.peak_mem_mb, 0),
                      f"{row.vs_eager:.2f}" if row.vs_eager is not None else "n/a")
    failed = [f"{row.model} {row.precision} ({row.backend}): {row.status}" for row in result.rows if not row.ok]
    return table, failed


def write_reports(result: "BenchmarkResult", out: Path) -> dict[str, Path]:
    """benchmark.md/.csv/.json and accuracy_vs_fps.png under `out`; returns them by kind."""
    from edgesewer.benchmark.plot import plot_accuracy_vs_fps

    out.mkdir(parents=True, exist_ok=True)
    outputs = {"csv": write_csv(result, out / "benchmark.csv"), "json": write_json(result, out / "benchmark.json")}
    try:
        outputs["png"] = plot_accuracy_vs_fps(result.rows, out / "accuracy_vs_fps.png")
    except ImportError:  # matplotlib is an optional extra; the table matters more than the picture
        pass
    md = out / "benchmark.md"
    md.write_text(markdown(result, outputs["png"].name if "png" in outputs else None), encoding="utf-8")
    outputs["md"] = md
    return outputs
