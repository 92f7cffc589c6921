"""The coded observation list: the EN 13508-2 mapping covers every code and agrees with the docs;
the CSV/JSON have the documented columns, one row per observation, S/F markers for continuous
defects (by distance, or by duration without one); and a whole run writes it with clock positions."""

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_runtime_support import GREY, RED, make_classifier_artifact, make_segmenter_artifact

from edgesewer.runtime.observations import (
    COLUMNS,
    CONTINUOUS_M,
    CONTINUOUS_S_WITHOUT_DISTANCE,
    EN_MAPPING,
    is_continuous,
    mapping_for,
    observation_rows,
    observations_csv,
    observations_json,
)
from edgesewer.runtime.pipeline import RunOptions
from edgesewer.runtime.runner import run_inspection
from edgesewer.runtime.segments import CRACK_CODE
from edgesewer.taxonomy import SEWER_CODES, SEWER_DESCRIPTIONS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "observations.md"
# EN 13508-2 main codes for drains and sewers this mapping may use (BA structural, BB operational,
# BC inventory, BD other).
EN_MAIN_CODES = {"BAA", "BAB", "BAC", "BAF", "BAH", "BAI", "BAJ", "BBA", "BBB", "BBC", "BBE", "BBF", "BCA", "BDB"}


def segment(code, start_time, end_time, start_frame=None, peak=0.8, ciw=0.5, **extra):
    fps = 25.0
    return {
        "code": code, "description": SEWER_DESCRIPTIONS.get(code, "crack (segmentation)"),
        "start_frame": round(start_time * fps) if start_frame is None else start_frame,
        "end_frame": round(end_time * fps), "start_time": start_time, "end_time": end_time,
        "peak_score": peak, "mean_score": peak - 0.1, "ciw": ciw, "severity": ciw * peak,
        "snapshot": f"snapshots/{code}.jpg", **extra,
    }


def test_mapping_covers_every_sewer_ml_code_and_crack():
    assert set(EN_MAPPING) == set(SEWER_CODES) | {CRACK_CODE} and len(EN_MAPPING) == 18
    for code, m in EN_MAPPING.items():
        assert m.source_code == code
        assert set(m.en_code.split("/")) <= EN_MAIN_CODES, m
        assert m.fit in {"direct", "split", "approximate", "none"}
        assert m.cannot_say  # every code leaves something unsaid
        assert m.fit == "direct" or m.remark, m  # the CSV must say why a code is not a plain match
        assert re.fullmatch(r"([A-Z](/[A-Z])?)?", m.characterisation_1), m
    assert EN_MAPPING["RB"].en_code == "BAB/BAC" and EN_MAPPING[CRACK_CODE].en_code == "BAB"
    assert [c for c, m in EN_MAPPING.items() if m.fit == "direct"] == [
        "OB", "DE", "FS", "IS", "RO", "IN", "AF", "BE", "FO", "GR", "PH", "PB", "CRACK"]
    assert mapping_for("XX").en_code == "BDB" and mapping_for("XX").fit == "none"


def test_docs_table_is_the_mapping():
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and (cells[0] in SEWER_CODES or cells[0] == CRACK_CODE):
            rows[cells[0]] = cells
    assert set(rows) == set(EN_MAPPING)
    for code, (_, meaning, en_code, en_name, char1, fit) in rows.items():
        m = EN_MAPPING[code]
        assert (en_code, en_name, char1, fit) == (m.en_code, m.en_name, m.characterisation_1, m.fit), code
        if code in SEWER_DESCRIPTIONS:
            assert meaning == SEWER_DESCRIPTIONS[code]


def test_rows_with_distance_mark_continuous_defects_start_and_finish():
    segments = [
        segment("RB", 10.0, 12.0, start_m=2.0, end_m=2.4, clock=12, clock_from=12, clock_to=None),
        segment("AF", 20.0, 40.0, start_m=4.0, end_m=7.25, clock=6, clock_from=6),  # 3.25 m: continuous
        segment(CRACK_CODE, 11.0, 12.0, start_m=2.2, end_m=2.4, clock=12, clock_from=11, clock_to=1,
                crack_length_px=120.0, crack_area_px=600.0),
        segment("FS", 30.0, 30.5, start_m=5.0, end_m=5.1),  # inside the AF stretch, no clock
    ]
    rows = observation_rows(segments)
    assert [r["observation"] for r in rows] == [1, 2, 3, 4, 5]
    assert [(r["source_code"], r["distance_m"], r["continuous"]) for r in rows] == [
        ("RB", 2.0, ""), (CRACK_CODE, 2.2, ""), ("AF", 4.0, "S01"), ("FS", 5.0, ""), ("AF", 7.25, "F01")]
    rb, crack, af_start, fs, af_end = rows
    assert (rb["code"], rb["clock_from"], rb["clock_to"], rb["fit"]) == ("BAB/BAC", "12", "", "split")
    assert (crack["code"], crack["clock_from"], crack["clock_to"]) == ("BAB", "11", "1")
    assert "crack 120 px long, 600 px area" in crack["remarks"] and "video" not in crack["remarks"]
    assert (af_start["code"], af_start["clock_from"], af_end["time_s"]) == ("BBC", "6", 40.0)
    assert (fs["code"], fs["clock_from"], fs["score"], fs["severity"]) == ("BAJ", "", 0.8, 0.4)
    assert "break/collapse" in rb["remarks"] and rb["snapshot"] == "snapshots/RB.jpg"

    text = observations_csv(rows)
    parsed = list(csv.DictReader(text.splitlines()))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) == 5
    assert [p["continuous"] for p in parsed] == ["", "", "S01", "", "F01"]
    data = json.loads(observations_json(rows, [dict(s, distance_source="odometer") for s in segments]))
    assert data["columns"] == list(COLUMNS) and len(data["observations"]) == 5
    assert data["observations"][0]["clock_to"] is None and data["distance_source"] == "odometer"
    assert set(data["mapping"]) == {"RB", "AF", CRACK_CODE, "FS"}


def test_continuous_rule_edges():
    assert CONTINUOUS_M == 1.0 and CONTINUOUS_S_WITHOUT_DISTANCE == 5.0
    assert not is_continuous(segment("AF", 0.0, 60.0, start_m=3.0, end_m=4.0))  # exactly 1 m: not longer
    assert is_continuous(segment("AF", 0.0, 1.0, start_m=3.0, end_m=4.01))  # distance wins over time
    assert not is_continuous(segment("AF", 10.0, 15.0))  # exactly 5 s
    assert is_continuous(segment("AF", 10.0, 15.04))


def test_rows_without_distance_keep_time_in_remarks_and_split_by_duration():
    rows = observation_rows([segment("RO", 3.0, 4.5), segment("BE", 6.0, 14.0), segment("GR", 8.0, 8.2)])
    assert [(r["source_code"], r["time_s"], r["continuous"]) for r in rows] == [
        ("RO", 3.0, ""), ("BE", 6.0, "S01"), ("GR", 8.0, ""), ("BE", 14.0, "F01")]
    assert all(r["distance_m"] == "" for r in rows)
    assert "video 00:03.0-00:04.5 (no distance)" in rows[0]["remarks"]
    assert "continuous by duration (> 5 s)" in rows[1]["remarks"]
    assert (rows[2]["code"], rows[2]["characterisation_1"]) == ("BCA", "A")
    assert observation_rows([]) == [] and observations_csv([]).strip() == ",".join(COLUMNS)


def write_half_red_video(path: Path, frames: int, spans: dict, fps: float = 25.0) -> Path:
    """64 x 48 MJPG: grey, but in each span the given half of the frame ('left' / 'right') is red."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        image = np.full((48, 64, 3), GREY, np.uint8)
        for (start, end), side in spans.items():
            if start <= i <= end:
                image[:, 32:] = RED if side == "right" else image[:, 32:]
                image[:, :32] = RED if side == "left" else image[:, :32]
        writer.write(image)
    writer.release()
    return path


def test_a_run_writes_clock_positions_and_the_observation_list(tmp_path):
    """Toy models: the classifier's CAM and the segmenter both light up red pixels. Red on the left
    half for 0.4 s (9 o'clock; the crack arc from 6 to 12), then on the right half for 6 s (3
    o'clock; 12 to 6): the long one is continuous by duration (no distance source)."""
    cls = make_classifier_artifact(tmp_path / "models", cam=True)
    seg = make_segmenter_artifact(tmp_path / "models")
    video = write_half_red_video(tmp_path / "pipe.avi", 200, {(5, 14): "left", (40, 189): "right"})
    out = tmp_path / "rep"
    summary = run_inspection(str(video), cls, seg, options=RunOptions(live_status=False, headless=True, report=out))
    assert summary.error is None
    found = {(s.code, s.start_frame): (s.clock, s.clock_from, s.clock_to) for s in summary.segments}
    assert found == {
        (CRACK_CODE, 5): (9, 6, 12), ("RB", 5): (9, 9, None),
        (CRACK_CODE, 40): (3, 12, 6), ("RB", 40): (3, 3, None),
    }
    report = json.loads((out / "report.json").read_text())
    clocks = {(s["code"], s["clock"]) for s in report["segments"]}
    assert clocks == {(CRACK_CODE, 9), ("RB", 9), (CRACK_CODE, 3), ("RB", 3)}
    with open(out / "observations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["source_code"], r["code"], r["clock_from"], r["clock_to"], r["continuous"]) for r in rows] == [
        (CRACK_CODE, "BAB", "6", "12", ""), ("RB", "BAB/BAC", "9", "", ""),
        (CRACK_CODE, "BAB", "12", "6", "S01"), ("RB", "BAB/BAC", "3", "", "S02"),
        (CRACK_CODE, "BAB", "12", "6", "F01"), ("RB", "BAB/BAC", "3", "", "F02"),
    ]
    assert all(r["distance_m"] == "" and r["snapshot"].startswith("snapshots/") for r in rows)
    assert all((out / r["snapshot"]).is_file() for r in rows)
    assert json.loads((out / "observations.json").read_text())["observations"][2]["continuous"] == "S01"
    page = (out / "report.html").read_text()
    assert page.count('class="lane"') == 2 and page.count('class="bar"') == 4
    assert "video time (no distance source)" in page and '<a href="observations.csv">' in page


@pytest.mark.parametrize("side, hour", [("left", 9), ("right", 3)])
def test_half_frame_masks_read_as_their_side(side, hour):
    """The same half-frame geometry as the run above, without the video codec in between."""
    from edgesewer.runtime.clock import clock_of_mask

    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = side == "right"
    mask[:, :16] = side == "left"
    pos = clock_of_mask(mask, frame_hw=(48, 64))
    assert pos.hour == hour and pos.extent_degrees > 170 and not pos.whole_circumference
