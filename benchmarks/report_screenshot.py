"""report.html in a real browser: headless Chromium screenshots the strip chart of a report built
from hand-made segments, for the README picture (`benchmarks/results/report_stripchart.png`).

    python benchmarks/report_screenshot.py [--out benchmarks/results/report_stripchart.png]

The segments are chosen to show every feature (distances, a continuous defect, clock positions, all
severities); their snapshots are synthetic stills of each code. It shows the layout, not a model's
findings. Needs Chromium (`apt-get install chromium-headless-shell`); says so and exits 2 without.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Path of the first Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1100, 760), timeout_s: float = 90.0) -> Path:
    """Screenshot `page` (a local HTML file) at `size` (width, height) into `png` with headless Chromium."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chromium on PATH (apt-get install chromium-headless-shell)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # root in a container: Chromium's sandbox needs namespaces it may not get
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"{Path(browser).name} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return png


# (code, start_m, end_m, peak score, clock, clock_from, clock_to): a 38 m pipe survey.
DEMO = (
    ("GR", 2.1, 2.4, 0.93, 2, 2, None),
    ("FS", 4.8, 5.1, 0.71, 6, 6, None),
    ("CRACK", 7.3, 9.6, 0.88, 12, 11, 1),
    ("RB", 7.4, 9.5, 0.91, 12, 12, None),
    ("RO", 12.0, 12.4, 0.64, 1, 1, None),
    ("FS", 14.6, 14.9, 0.55, 6, 6, None),
    ("AF", 17.0, 23.5, 0.83, 6, 6, None),
    ("OB", 20.2, 20.9, 0.58, 9, 9, None),
    ("IN", 26.3, 26.6, 0.77, 3, 3, None),
    ("PB", 29.8, 30.1, 0.69, 10, 10, None),
    ("CRACK", 33.0, 33.4, 0.62, 4, 3, 5),
    ("RB", 33.0, 33.5, 0.74, 4, 4, None),
)


def demo_report(directory: Path, with_snapshots: bool = True) -> Path:
    """A report.html (and observations) from the DEMO segments, 0.2 m/s survey, 25 fps; returns the page."""
    from edgesewer.runtime.report import write_report
    from edgesewer.runtime.segments import CRACK_CODE, DefectSegment
    from edgesewer.taxonomy import CIW, SEWER_DESCRIPTIONS

    speed, fps = 0.2, 25.0
    segments, snapshots = [], {}
    for code, start_m, end_m, peak, clock, clock_from, clock_to in DEMO:
        ciw = CIW["RB" if code == CRACK_CODE else code]
        t0, t1 = start_m / speed, end_m / speed
        segment = DefectSegment(
            code=code, description=SEWER_DESCRIPTIONS.get(code, "crack (segmentation)"),
            start_frame=round(t0 * fps), end_frame=round(t1 * fps), start_time=t0, end_time=t1,
            peak_score=peak, mean_score=peak - 0.08, frames=round((t1 - t0) * fps) + 1, ciw=ciw,
            severity=ciw * peak, peak_frame=round((t0 + t1) / 2 * fps),
            crack_area_px=1840.0 if code == CRACK_CODE else None,
            crack_length_px=212.0 if code == CRACK_CODE else None,
            clock=clock, clock_from=clock_from, clock_to=clock_to,
        )
        segments.append(segment)
        if with_snapshots:
            snapshots[id(segment)] = _snapshot(code)
    write_report(directory, segments, {"source": "demo-survey.mp4 (hand-made segments)", "fps": fps},
                 snapshots, ())
    _add_distances(directory / "report.json", [(d[1], d[2]) for d in DEMO])
    return directory / "report.html"


def _add_distances(report_json: Path, spans: list[tuple[float, float]]) -> None:
    """Give the report's segments start_m/end_m (as a run with a distance source writes them) and
    write the page and the observation list again from it."""
    import json

    from edgesewer.runtime.observations import observation_rows, observations_csv, observations_json
    from edgesewer.runtime.report import render_html

    data = json.loads(report_json.read_text())
    for entry, (start_m, end_m) in zip(data["segments"], spans):
        entry.update(start_m=start_m, end_m=end_m, distance_source="demo: 0.2 m/s")
    report_json.write_text(json.dumps(data, indent=2) + "\n")
    (report_json.parent / "report.html").write_text(render_html(data))
    rows = observation_rows(data["segments"])
    (report_json.parent / "observations.csv").write_text(observations_csv(rows))
    (report_json.parent / "observations.json").write_text(observations_json(rows, data["segments"]))


def _snapshot(code: str) -> bytes:
    from edgesewer.data.synth import render_frame

    image = render_frame(() if code == "CRACK" else (code,), seed=7, size=(320, 256))
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def crop_to_content(png: Path, out: Path, max_width: int = 900) -> Path:
    """Cut the white margin below the page content, scale to at most `max_width`, save as a small PNG."""
    image = cv2.imread(str(png))
    rows = np.where((image < 245).any(axis=(1, 2)))[0]
    image = image[: rows.max() + 16] if len(rows) else image
    if image.shape[1] > max_width:
        image = cv2.resize(image, (max_width, round(image.shape[0] * max_width / image.shape[1])),
                           interpolation=cv2.INTER_AREA)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # a 256-colour palette keeps the committed picture small; Pillow comes with matplotlib
        from PIL import Image

        Image.fromarray(image[:, :, ::-1]).quantize(256).save(out, optimize=True)
    except ImportError:
        cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_stripchart.png"))
    args = parser.parse_args()
    if find_browser() is None:
        print("no Chromium on PATH: apt-get install chromium-headless-shell", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        page = demo_report(Path(tmp) / "report")
        raw = screenshot(page, Path(tmp) / "raw.png", size=(1000, 700))
        crop_to_content(raw, args.out)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
