"""report.html's strip chart: one lane per code present, bars where their distance (or time) puts
them, coloured by severity and linked to their rows; and the same page in a real browser (headless
Chromium), where the bars must show in their colours (skipped, with the reason, without Chromium)."""

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesewer.runtime.report import clock_text, render_html
from edgesewer.runtime.stripchart import (
    LABEL_W,
    RIGHT_PAD,
    WIDTH,
    lane_order,
    nice_step,
    severity_colour,
    strip_chart_svg,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report_screenshot  # noqa: E402


def seg(code, start_time, end_time, severity, **extra):
    return {"code": code, "description": code, "start_frame": int(start_time * 25), "end_frame": int(end_time * 25),
            "start_time": start_time, "end_time": end_time, "peak_score": 0.9, "mean_score": 0.8, "ciw": 1.0,
            "severity": severity, **extra}


def bars(svg):
    return re.findall(r'<rect class="bar" data-code="(\w+)" x="([\d.]+)" y="(\d+)" width="([\d.]+)"[^>]*fill="(#\w+)"',
                      svg)


def test_severity_ramp_and_ticks():
    assert [severity_colour(s) for s in (0.0, 0.5, 1.0, 2.0, -1.0)] == [
        "#fed976", "#fd8d3c", "#bd0026", "#bd0026", "#fed976"]
    assert severity_colour(0.25) == "#feb359"  # halfway between the first two stops: (254, 179, 89)
    assert [nice_step(s) for s in (33.5, 10.0, 0.9, 240.0)] == [5.0, 2.0, 0.2, 50.0]
    assert lane_order(["CRACK", "OB", "XX", "RB", "OB"]) == ["RB", "OB", "CRACK", "XX"]


def test_distance_axis_lanes_and_bar_positions():
    segments = [
        seg("RB", 10.0, 25.0, 0.9, start_m=2.0, end_m=5.0, clock_from=11, clock_to=1),
        seg("AF", 30.0, 60.0, 0.05, start_m=6.0, end_m=10.0),
        seg("RB", 70.0, 70.1, 0.5, start_m=9.0, end_m=9.0),  # a point: still 3 px wide
    ]
    svg = strip_chart_svg(segments)
    assert svg.count('class="lane"') == 2 and re.findall(r'class="lane" data-code="(\w+)"', svg) == ["RB", "AF"]
    assert "distance along the pipe" in svg and ">10 m<" in svg and "video time" not in svg
    plot_w = WIDTH - LABEL_W - RIGHT_PAD  # the axis runs 0 .. 10 m (10 is a tick)
    found = bars(svg)
    assert [(code, float(x), float(w)) for code, x, _, w, _ in found] == [
        ("RB", pytest.approx(LABEL_W + 0.2 * plot_w, abs=0.05), pytest.approx(0.3 * plot_w, abs=0.1)),
        ("AF", pytest.approx(LABEL_W + 0.6 * plot_w, abs=0.05), pytest.approx(0.4 * plot_w, abs=0.1)),
        ("RB", pytest.approx(LABEL_W + 0.9 * plot_w, abs=0.05), 3.0),
    ]
    assert found[0][2] == found[2][2] != found[1][2]  # both RB bars in one lane
    assert [fill for *_, fill in found] == [severity_colour(0.9), severity_colour(0.05), severity_colour(0.5)]
    assert re.findall(r'<a href="#seg-(\d)">', svg) == ["1", "2", "3"]
    assert "at 11-1 o&#x27;clock" in svg
    assert strip_chart_svg([]) == ""


def test_time_axis_without_distance_and_the_page():
    segments = [seg("OB", 1.0, 4.0, 0.3, snapshot="snapshots/001_OB_f25.jpg", clock=9),
                seg("CRACK", 2.0, 2.5, 0.8, start_m=1.0, end_m=1.2)]  # one without distance: time axis
    page = render_html({"run": {"source": "v.mp4"}, "segments": segments,
                        "summary": {"segments": 2, "by_code": {"CRACK": 1, "OB": 1}, "max_severity": 0.8}})
    assert "video time (no distance source)" in page and "<script" not in page
    assert page.count("<svg") == 1 and page.count('class="lane"') == 2
    assert '<tr class="medium" id="seg-1"><td><a href="snapshots/001_OB_f25.jpg">1</a></td>' in page
    assert 'id="seg-2"' in page and "<td>9</td>" in page  # the clock column
    assert clock_text({"clock_from": 11, "clock_to": 1}) == "11 - 1" and clock_text({}) == ""
    empty = render_html({"run": {"source": "v.mp4"}, "segments": [],
                         "summary": {"segments": 0, "by_code": {}, "max_severity": 0.0}})
    assert "<svg" not in empty and "No defects detected." in empty


def test_report_in_headless_chromium(tmp_path):
    """The demo report (12 segments along 35 m) screenshotted: the dark-red RB/CRACK bars at 7-10 m
    and the pale AF bar at 17-23.5 m must be on screen, in that order, in the chart's lanes."""
    if report_screenshot.find_browser() is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium-headless-shell)")
    page = report_screenshot.demo_report(tmp_path / "report", with_snapshots=False)
    png = report_screenshot.screenshot(page, tmp_path / "shot.png", size=(1000, 700))
    image = cv2.imread(str(png)).astype(int)
    assert image.shape[:2] == (700, 1000)

    def near(hex_colour, tol=12):
        r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        return (np.abs(image - np.array([b, g, r])).max(axis=2) <= tol)

    red = near(severity_colour(0.91 * 1.0))  # RB: CIW 1, peak 0.91
    pale = near(severity_colour(0.83 * 0.0811))  # AF: severity 0.07
    assert red.sum() > 400 and pale.sum() > 1000, (red.sum(), pale.sum())
    red_x, pale_x = np.nonzero(red)[1], np.nonzero(pale)[1]
    # x = 0 m sits at LABEL_W + the page margin; 35 m at the right end of the plot.
    assert np.median(red_x) < np.median(pale_x)
    span_px = (np.median(pale_x) - np.median(red_x)) / (WIDTH - LABEL_W - RIGHT_PAD)
    assert 0.30 < span_px < 0.45  # bar centres 8.5 m and 20.25 m apart on a 35 m axis: 0.34
