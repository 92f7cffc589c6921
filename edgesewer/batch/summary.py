"""DIR/summary.csv and DIR/summary.html: one row per video of the archive, then the totals.

Built from the manifest alone (each done video's row comes from its report.json), so it can be
rewritten at any time and always covers earlier runs of the same batch.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any

from edgesewer.batch.manifest import Manifest, VideoEntry
from edgesewer.taxonomy import SEWER_CODES

BASE_COLUMNS = ["video", "source", "status", "duration_s", "frames", "segments"]
TAIL_COLUMNS = ["max_severity", "attempts", "elapsed_s", "error", "report"]


def archive_codes(entries: list[VideoEntry]) -> list[str]:
    """The codes any done video has segments of: Sewer-ML order, then others (CRACK) alphabetically."""
    seen = {code for e in entries if e.row for code in e.row["by_code"]}
    known = [c for c in SEWER_CODES if c in seen]
    return known + sorted(seen - set(known))


def summary_rows(manifest: Manifest) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """(columns, one row per video, the totals row)."""
    entries = list(manifest.videos.values())
    codes = archive_codes(entries)
    columns = BASE_COLUMNS + codes + TAIL_COLUMNS
    rows = []
    for e in entries:
        row: dict[str, Any] = {"video": e.name, "source": e.source, "status": e.state, "attempts": e.attempts,
                               "error": e.error or ""}
        if e.row:
            row.update({k: e.row.get(k) for k in ("duration_s", "frames", "segments", "max_severity", "elapsed_s")})
            row.update({code: e.row["by_code"].get(code, 0) for code in codes})
            row["report"] = f"videos/{e.name}/report.html"
        rows.append(row)
    done = [e.row for e in entries if e.row]
    counts = manifest.counts()
    status = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    totals: dict[str, Any] = {
        "video": "TOTAL",
        "source": f"{len(entries)} videos",
        "status": status,
        "duration_s": round(sum(r.get("duration_s") or 0.0 for r in done), 3),
        "frames": sum(r["frames"] for r in done),
        "segments": sum(r["segments"] for r in done),
        "max_severity": max((r["max_severity"] for r in done), default=0.0),
        "attempts": sum(e.attempts for e in entries),
        "elapsed_s": round(sum(r.get("elapsed_s") or 0.0 for r in done), 3),
        "error": f"{counts['failed']} failed" if counts["failed"] else "",
        "report": "",
    }
    totals.update({code: sum(r["by_code"].get(code, 0) for r in done) for code in codes})
    return columns, rows, totals


def summary_csv(manifest: Manifest) -> str:
    columns, rows, totals = summary_rows(manifest)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows + [totals]:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()


def _td(value: Any) -> str:
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def summary_html(manifest: Manifest) -> str:
    columns, rows, totals = summary_rows(manifest)
    shown = [c for c in columns if c not in ("source", "report")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = []
    for row in rows:
        cells = []
        for c in shown:
            if c == "video" and row.get("report"):
                cells.append(f'<td><a href="{html.escape(row["report"])}">{html.escape(row["video"])}</a></td>')
            elif c == "video":
                cells.append(f'<td title="{html.escape(row["source"])}">{html.escape(row["video"])}</td>')
            else:
                cells.append(_td(row.get(c)))
        level = "failed" if row["status"] == "failed" else "high" if (row.get("max_severity") or 0) > 0.5 else ""
        body.append(f'<tr class="{level}">{"".join(cells)}</tr>')
    body.append(f'<tr class="total">{"".join(_td(totals.get(c)) for c in shown)}</tr>')
    hours = (totals["duration_s"] or 0.0) / 3600
    config = manifest.config
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th>{_td(v)}</tr>" for k, v in
        (("classifier", config.get("model")), ("segmenter", config.get("seg")), ("created", manifest.created))
        if v
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Archive summary</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.high td {{ background: #fde2e2; }} tr.failed td {{ background: #eee; color: #a00; }}
tr.total td {{ font-weight: bold; border-top: 2px solid #333; }}
</style></head><body>
<h1>Archive summary</h1>
<p>{len(rows)} videos ({html.escape(totals["status"])}); {totals["frames"]} frames, {hours:.2f} h of video;
{totals["segments"]} defect segments; highest severity {totals["max_severity"]:.2f}.
Each video's name links to its inspection report. Also as <a href="summary.csv">summary.csv</a>.</p>
<table>{facts}</table>
<table><tr>{head}</tr>
{"".join(body)}
</table></body></html>
"""


def write_summary(manifest: Manifest, out_dir: Path) -> tuple[Path, Path]:
    from edgesewer.runtime.report import _write_atomic

    out_dir = Path(out_dir)
    csv_path, html_path = out_dir / "summary.csv", out_dir / "summary.html"
    _write_atomic(csv_path, summary_csv(manifest))
    _write_atomic(html_path, summary_html(manifest))
    return csv_path, html_path
