"""What an export prints at the end: the summary table and the exact follow-up commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesewer.export.metadata import model_bytes

if TYPE_CHECKING:
    from edgesewer.export.pipeline import ExportResult


def followup_commands(result: "ExportResult", model: str, target: str, data_dir: Path,
                      random_weights: bool) -> list[str]:
    """The commands to run next, with real paths."""
    requested = [p for p in result.artifacts if p != "fp32"] or ["fp32"]
    main = "int8-cpu" if "int8-cpu" in result.artifacts else requested[0]
    task = result.sidecars["fp32"]["task"]
    flag = "--seg" if task == "segment" else "--clip-model" if task == "video" else "--model"
    source = _demo_source(data_dir)
    commands = []
    if target == "tensorrt" and result.engine is None:
        commands.append(f"edgesewer build {result.artifacts[requested[0]]}   # on the device")
        engine = result.artifacts[requested[0]].with_suffix(".engine")
        commands.append(f"edgesewer run {flag} {engine} --source {source} --backend tensorrt")
    elif result.engine is not None:
        commands.append(f"edgesewer run {flag} {result.engine} --source {source} --backend tensorrt")
    commands.append(f"edgesewer run {flag} {result.artifacts[main]} --source {source} --backend ort")
    backend = "tensorrt" if result.engine is not None else "ort"
    precisions = ",".join(p for p in result.artifacts if not (backend == "tensorrt" and p == "int8-cpu"))
    weights = " --weights random" if random_weights else ""
    commands.append(f"edgesewer benchmark --models {model} --precisions {precisions} --backend {backend} "
                    f"--data {data_dir}{weights}")
    return commands


def _demo_source(data_dir: Path) -> str:
    """A video from the synthetic set when there is one, else the first camera."""
    for root in (data_dir, data_dir.parent):
        videos = sorted(root.glob("videos/*.mp4")) + sorted(root.glob("*.mp4"))
        if videos:
            return str(videos[0])
    return "0"


def summary_rows(result: "ExportResult") -> list[dict[str, Any]]:
    """One row per artifact for the summary table (also used by tests)."""
    rows = []
    for precision, path in result.artifacts.items():
        sidecar = result.sidecars[precision]
        parity = sidecar.get("parity") or {}
        accuracy = sidecar.get("accuracy") or {}
        calib = sidecar.get("calibration") or {}
        rows.append({
            "precision": precision, "file": str(path), "size_mb": model_bytes(path) / 1e6,
            "max_abs_diff": parity.get("max_abs_diff"), "agreement": parity.get("decision_agreement"),
            "accuracy": accuracy, "calibration_images": calib.get("images"),
        })
    return rows


def summary_table(result: "ExportResult"):
    """Rich table: file, size, parity vs PyTorch, headline accuracy with delta to fp32, calibration count."""
    from rich.table import Table

    from edgesewer.export.accuracy import headline_keys

    task = result.sidecars["fp32"]["task"]
    key = headline_keys(task)[0]
    table = Table(title=f"export: {result.out_dir}")
    for name in ("precision", "file", "MB", "max |Δ| vs PyTorch", "agreement", key, f"Δ{key}", "calib. images"):
        table.add_column(name, justify="left" if name in ("precision", "file") else "right")
    for row in summary_rows(result):
        acc = row["accuracy"]
        value = f"{100 * acc[key]:.2f}" if key in acc else "n/a"
        delta = acc.get("delta_to_fp32_points", {}).get(key)
        calib = row["calibration_images"]
        calib_cell = str(calib) if calib is not None else ("dynamic" if row["precision"] == "int8-cpu" else "")
        table.add_row(row["precision"], Path(row["file"]).name, f"{row['size_mb']:.1f}",
                      f"{row['max_abs_diff']:.2e}" if row["max_abs_diff"] is not None else "",
                      f"{row['agreement']:.4f}" if row["agreement"] is not None else "",
                      value, "" if delta is None or row["precision"] == "fp32" else f"{delta:+.2f}", calib_cell)
    if result.engine is not None:
        table.add_row("engine", result.engine.name, f"{result.engine.stat().st_size / 1e6:.1f}", "", "", "", "", "")
    return table

