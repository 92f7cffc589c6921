"""The report's strip chart: the defect segments along the pipe as one inline SVG, no script.

x is the distance along the pipe when every segment carries `start_m`/`end_m`, else video time;
one lane per code present (Sewer-ML order, then CRACK); each segment a bar coloured by severity
(CIW x peak score) that links to its row in the table below the chart.
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

from edgesewer.taxonomy import SEWER_CODES

WIDTH = 960
LABEL_W = 64  # lane labels on the left
RIGHT_PAD = 24
LANE_H = 22
TOP = 8
AXIS_H = 40
LEGEND_W = 160
# Severity colour ramp, light yellow (0) through orange to dark red (1): reads on white and in greyscale.
RAMP = ((0.0, (254, 217, 118)), (0.5, (253, 141, 60)), (1.0, (189, 0, 38)))


def severity_colour(severity: float) -> str:
    """'#rrggbb' on the ramp for a severity in [0, 1] (clipped)."""
    s = min(1.0, max(0.0, float(severity)))
    for (s0, c0), (s1, c1) in zip(RAMP, RAMP[1:]):
        if s <= s1:
            t = (s - s0) / (s1 - s0)
            return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))
    return "#" + "".join(f"{c:02x}" for c in RAMP[-1][1])


def lane_order(codes: Sequence[str]) -> list[str]:
    """Codes present, in Sewer-ML column order, then CRACK, then anything else alphabetically."""
    present = set(codes)
    known = [c for c in (*SEWER_CODES, "CRACK") if c in present]
    return known + sorted(present - set(known))


def uses_distance(segments: Sequence[dict[str, Any]]) -> bool:
    return bool(segments) and all(s.get("start_m") is not None and s.get("end_m") is not None for s in segments)


def nice_step(span: float, target_ticks: int = 8) -> float:
    """A 1, 2 or 5 x 10^k tick step giving about `target_ticks` ticks over `span`."""
    raw = max(span, 1e-9) / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(value: float, distance: bool, step: float) -> str:
    if distance:
        return f"{value:.{max(0, -math.floor(math.log10(step)))}f} m"
    minutes, seconds = divmod(value, 60.0)
    return f"{int(minutes)}:{seconds:04.1f}" if step < 1 else f"{int(minutes)}:{int(round(seconds)):02d}"


def strip_chart_svg(segments: Sequence[dict[str, Any]]) -> str:
    """Inline `<svg>` of the segments; '' when there are none. Bar i links to `#seg-{i+1}`."""
    if not segments:
        return ""
    distance = uses_distance(segments)
    start_key, end_key = ("start_m", "end_m") if distance else ("start_time", "end_time")
    lo = min(0.0, min(float(s[start_key]) for s in segments))
    hi = max(float(s[end_key]) for s in segments)
    hi = hi if hi > lo else lo + 1.0
    step = nice_step(hi - lo)
    hi = math.ceil(hi / step - 1e-9) * step  # end on a tick, so the last bar is not cut by the frame
    lanes = lane_order([s["code"] for s in segments])
    plot_w = WIDTH - LABEL_W - RIGHT_PAD
    height = TOP + LANE_H * len(lanes) + AXIS_H

    def x_of(value: float) -> float:
        return LABEL_W + (float(value) - lo) / (hi - lo) * plot_w

    parts = [
        f'<svg class="strip" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="defects along the pipe" '
        'font-family="sans-serif" font-size="12">',
        '<linearGradient id="severity-ramp">'
        + "".join(f'<stop offset="{s:g}" stop-color="{severity_colour(s)}"/>' for s, _ in RAMP)
        + "</linearGradient>",
    ]
    for i, code in enumerate(lanes):  # lane backgrounds and labels
        y = TOP + i * LANE_H
        fill = "#f4f4f4" if i % 2 == 0 else "#ffffff"
        parts.append(f'<rect class="lane" data-code="{html.escape(code)}" x="{LABEL_W}" y="{y}" width="{plot_w}" '
                     f'height="{LANE_H}" fill="{fill}"/>')
        parts.append(f'<text x="{LABEL_W - 6}" y="{y + LANE_H / 2 + 4:.1f}" text-anchor="end" '
                     f'font-weight="bold">{html.escape(code)}</text>')
    axis_y = TOP + LANE_H * len(lanes)
    tick = math.ceil(lo / step) * step
    while tick <= hi + 1e-9:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#ccc" stroke-width="1"/>')
        label = _tick_label(tick, distance, step)
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{label}</text>')
        tick += step
    parts.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + plot_w}" y2="{axis_y}" stroke="#444"/>')
    axis_name = "distance along the pipe" if distance else "video time (no distance source)"
    parts.append(f'<text x="{LABEL_W}" y="{axis_y + 34}">{axis_name}</text>')
    legend_x = LABEL_W + plot_w - LEGEND_W
    parts.append(f'<text x="{legend_x - 6}" y="{axis_y + 34}" text-anchor="end">severity 0</text>')
    parts.append(f'<rect x="{legend_x}" y="{axis_y + 24}" width="{LEGEND_W - 20}" height="12" '
                 'fill="url(#severity-ramp)" stroke="#888"/>')
    parts.append(f'<text x="{legend_x + LEGEND_W - 16}" y="{axis_y + 34}">1</text>')
    for number, s in enumerate(segments, start=1):  # the bars last, on top of the grid
        y = TOP + lanes.index(s["code"]) * LANE_H + 3
        x0, x1 = x_of(s[start_key]), x_of(s[end_key])
        width = max(3.0, x1 - x0)  # a one-frame defect stays visible
        clock = s.get("clock_from") if s.get("clock_from") is not None else s.get("clock")
        where = (f"{s[start_key]:.2f}-{s[end_key]:.2f} m" if distance
                 else f"{float(s['start_time']):.1f}-{float(s['end_time']):.1f} s")
        title = f"#{number} {s['code']} {where}, peak {float(s['peak_score']):.2f}, severity {s['severity']:.2f}"
        if clock is not None:
            title += f", at {clock}" + (f"-{s['clock_to']}" if s.get("clock_to") is not None else "") + " o'clock"
        parts.append(
            f'<a href="#seg-{number}"><rect class="bar" data-code="{html.escape(s["code"])}" x="{x0:.1f}" y="{y}" '
            f'width="{width:.1f}" height="{LANE_H - 6}" rx="2" fill="{severity_colour(s["severity"])}" '
            f'stroke="#333" stroke-width="0.5"><title>{html.escape(title)}</title></rect></a>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
