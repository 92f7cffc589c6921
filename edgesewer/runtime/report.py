"""The inspection report: `report.json` (machine-readable), `report.html` (one page an inspector
can open anywhere: a strip chart of the defects along the pipe, then a snapshot of each defect at
its peak frame) and the coded observation list `observations.csv` / `.json` (EN 13508-2 shaped,
see observations.py) in one folder.

Written at the end of every run, including Ctrl-C and a dead source, from what was seen so far.
With a clip model, its window-level segments are listed apart ("Clip-level segments"): they judge
seconds of video at a time, so they neither merge with nor replace the frame-level ones.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import cv2

from edgesewer.runtime.observations import observation_rows, observations_csv, observations_json
from edgesewer.runtime.overlay import Overlay
from edgesewer.runtime.postprocess import FrameResult
from edgesewer.runtime.segments import DefectSegment
from edgesewer.runtime.stripchart import strip_chart_svg

REPORT_FORMAT_VERSION = 1
SNAPSHOT_WIDTH = 640


def format_time(seconds: float) -> str:
    """62.25 -> '01:02.2' (minutes:seconds, as inspection logs write it)."""
    minutes, rest = divmod(max(0.0, float(seconds)), 60.0)
    return f"{int(minutes):02d}:{rest:04.1f}"


def _write_atomic(path: Path, text: str) -> None:
    """Temp file, fsync, rename: a reader (or a power cut) sees the old report or the new one, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # like the events: on a robot, power can go right after the run ends
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_snapshot(result: FrameResult, overlay: Overlay | None = None) -> bytes:
    """A segment's peak frame, annotated and at most SNAPSHOT_WIDTH wide, as JPEG bytes.

    Called as each segment closes, so a run keeps tens of kilobytes per segment, not the frame.
    """
    image = (overlay or Overlay()).draw(result)
    if image.shape[1] > SNAPSHOT_WIDTH:
        height = round(image.shape[0] * SNAPSHOT_WIDTH / image.shape[1])
        image = cv2.resize(image, (SNAPSHOT_WIDTH, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return data.tobytes() if ok else b""


def save_snapshots(directory: Path, segments: Sequence[DefectSegment], snapshots: dict[int, bytes]) -> None:
    """Each segment's encoded peak frame -> `snapshots/NNN_CODE_fFRAME.jpg`; sets `segment.snapshot`."""
    folder = directory / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    for number, segment in enumerate(segments, start=1):
        data = snapshots.get(id(segment))
        if not data:
            continue
        name = f"{number:03d}_{segment.code}_f{segment.peak_frame}.jpg"
        (folder / name).write_bytes(data)
        segment.snapshot = f"snapshots/{name}"


def report_dict(
    segments: Sequence[DefectSegment], run: dict[str, Any], clip_segments: Sequence[DefectSegment] = ()
) -> dict[str, Any]:
    by_code = Counter(s.code for s in segments)
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "run": run,
        "summary": {
            "segments": len(segments),
            "by_code": dict(sorted(by_code.items())),
            "max_severity": round(max((s.severity for s in segments), default=0.0), 4),
        },
        "segments": [s.to_dict() for s in segments],
        "clip_segments": [s.to_dict() for s in clip_segments],
    }


def write_report(
    directory: str | Path,
    segments: Sequence[DefectSegment],
    run: dict[str, Any],
    snapshots: dict[int, bytes] | None = None,
    clip_segments: Sequence[DefectSegment] = (),
) -> Path:
    """Write snapshots (`SegmentTracker.snapshots`), report.json, report.html and the observation
    list (observations.csv, observations.json) into `directory`; returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if snapshots:
        save_snapshots(directory, segments, snapshots)
    data = report_dict(segments, run, clip_segments)
    _write_atomic(directory / "report.json", json.dumps(data, indent=2) + "\n")
    _write_atomic(directory / "report.html", render_html(data))
    rows = observation_rows(data["segments"])
    _write_atomic(directory / "observations.csv", observations_csv(rows))
    _write_atomic(directory / "observations.json", observations_json(rows, data["segments"]))
    return directory / "report.json"


def _cell(value: Any) -> str:
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def format_distance(s: dict[str, Any]) -> str:
    """'12.34 - 12.80 m (ocr)', or '' when the run had no distance source."""
    if s.get("start_m") is None:
        return ""
    return f"{s['start_m']:.2f} - {s['end_m']:.2f} m ({s.get('distance_source') or '?'})"


def _segment_cells(number: int, s: dict[str, Any], row_id: str | None = None) -> str:
    """An open table row with the columns both segment tables share: # code description time frames distance
    numbers. With `row_id` the row is a target of the strip chart, and its number links to the snapshot."""
    level = "high" if s["severity"] > 0.5 else "medium" if s["severity"] > 0.2 else "low"
    times = f"{format_time(s['start_time'])} - {format_time(s['end_time'])}"
    frames = f"{s['start_frame']} - {s['end_frame']}"
    numbers = "".join(_cell(f"{s[k]:.2f}") for k in ("peak_score", "mean_score", "ciw", "severity"))
    ident = f' id="{row_id}"' if row_id else ""
    first = _cell(number)
    if row_id and s.get("snapshot"):
        first = f'<td><a href="{html.escape(s["snapshot"])}">{number}</a></td>'
    return (
        f'<tr class="{level}"{ident}>{first}<td><b>{html.escape(s["code"])}</b></td>{_cell(s["description"])}'
        f"{_cell(times)}{_cell(frames)}{_cell(format_distance(s))}{numbers}"
    )


def clock_text(s: dict[str, Any]) -> str:
    """'11 - 1' for an arc, '3' for one position, '' when unknown."""
    start = s.get("clock_from") if s.get("clock_from") is not None else s.get("clock")
    if start is None:
        return ""
    return f"{start} - {s['clock_to']}" if s.get("clock_to") is not None else str(start)


def render_html(data: dict[str, Any]) -> str:
    """A self-contained page: run facts, then one table row per defect segment with its snapshot."""
    run = data["run"]
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in run.items()
        if not isinstance(v, (dict, list))
    )
    warnings = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in run.get("warnings", []))
    stats = run.get("stats") or {}
    if stats:
        fps = (
            f"{stats.get('pipeline_fps')} / {stats.get('network_fps')} (dropped {stats.get('dropped_frames', 0)}, "
            f"stalls {stats.get('stalls', 0)}, reconnects {stats.get('reconnects', 0)})"
        )
        facts += f"<tr><th>pipeline FPS / network FPS</th>{_cell(fps)}</tr>"
    rows = []
    for number, s in enumerate(data["segments"], start=1):
        crack = ""
        if s.get("crack_length_px") is not None:
            crack = f"{s['crack_length_px']:.0f} px long, {s['crack_area_px']:.0f} px area"
        image = (
            f'<td><a href="{html.escape(s["snapshot"])}"><img src="{html.escape(s["snapshot"])}" width="240"></a></td>'
            if s.get("snapshot")
            else "<td></td>"
        )
        cells = _segment_cells(number, s, f"seg-{number}")
        rows.append(f"{cells}{_cell(clock_text(s))}{_cell(crack)}{image}</tr>")
    # A clip-only run has no frame-level model: "no defects" would read as a verdict it never made.
    clip_only = "clip_model" in run and "classifier" not in run and "segmenter" not in run
    empty = "No frame-level model in this run (clip mode only)." if clip_only else "No defects detected."
    body = "".join(rows) or f'<tr><td colspan="12">{empty}</td></tr>'
    clip_segments = data.get("clip_segments") or []
    clip_table = _clip_table(clip_segments) if "clip_model" in run or clip_segments else ""
    summary = data["summary"]
    counts = ", ".join(f"{code} x{n}" for code, n in summary["by_code"].items()) or "none"
    clip_count = f"; {len(clip_segments)} clip-level segments" if clip_table else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sewer inspection report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.high td {{ background: #fde2e2; }} tr.medium td {{ background: #fff1db; }}
tr:target td {{ outline: 2px solid #06c; }}
p.warning {{ background: #fde2e2; border: 2px solid #c00; padding: 8px; font-weight: bold; }}
</style></head><body>
<h1>Sewer inspection report</h1>
{warnings}<p>{summary["segments"]} defect segments ({html.escape(counts)}); highest severity {summary["max_severity"]:.2f}
(severity = class-importance weight x peak score){clip_count}.</p>
<table>{facts}</table>
{_chart_section(data["segments"])}<table><tr><th>#</th><th>code</th><th>description</th><th>time</th><th>frames</th>
<th>distance</th><th>peak</th><th>mean</th><th>CIW</th><th>severity</th><th>clock</th><th>crack</th><th>snapshot</th></tr>
{body}
</table>{clip_table}</body></html>
"""


def _chart_section(segments: list[dict[str, Any]]) -> str:
    """The strip chart with a heading and a note on the observation list; '' without segments."""
    svg = strip_chart_svg(segments)
    if not svg:
        return ""
    return (
        f'<h2>Defects along the pipe</h2>\n{svg}\n<p>One lane per code; a bar per segment, coloured by severity, '
        'linked to its row below. Coded observation list (EN 13508-2 shaped): '
        '<a href="observations.csv">observations.csv</a>, <a href="observations.json">observations.json</a>.</p>\n'
    )


def _clip_table(segments: list[dict[str, Any]]) -> str:
    """The clip model's segments: same columns as the frame-level table, without crack and snapshot."""
    rows = [f"{_segment_cells(number, s)}</tr>" for number, s in enumerate(segments, start=1)]
    body = "".join(rows) or '<tr><td colspan="10">No clip-level defects detected.</td></tr>'
    return f"""
<h2>Clip-level segments</h2>
<p>From the video-level (super-image) model: each window of the last seconds is classified as a whole;
windows in which a code is on and that overlap (or lie within the merge gap) form one segment.</p>
<table><tr><th>#</th><th>code</th><th>description</th><th>time</th><th>frames</th><th>distance</th>
<th>peak</th><th>mean</th><th>CIW</th><th>severity</th></tr>
{body}
</table>"""
