"""The report's defect segments as a coded observation list in the shape of EN 13508-2 records:
distance, code, characterisation, clock from/to, continuous-defect start/finish markers, remarks,
photograph, and the model's score. Written beside report.json as observations.csv and .json.

Sewer-ML's 17 classes come from the Danish application of EN 13508-2 (the DANVA photo manual's
two-letter codes); `EN_MAPPING` maps each, and the crack segmenter's CRACK, to the EN main code.
It is our crosswalk, written from the class names of the Sewer-ML paper and the EN main-code
definitions; docs/observations.md gives the table, its sources and what it cannot say. The model
keeps the Sewer-ML code (column `source_code`): the EN code is a proposal for an inspector.

Continuous defects (EN 13508-2: longer than 1 m along the pipe) get two rows, S01 at the start and
F01 at the finish. Distance comes from the segments' `start_m`/`end_m` when the run had a distance
source; without one the distance column stays empty, the video time goes to the remarks, and a
segment longer than `CONTINUOUS_S_WITHOUT_DISTANCE` of video counts as continuous.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

CONTINUOUS_M = 1.0  # EN 13508-2: a defect longer than this along the pipe is a continuous defect
# Without distance: 1 m at a survey speed of about 0.2 m/s (a typical CCTV crawler's; an assumption).
CONTINUOUS_S_WITHOUT_DISTANCE = 5.0

COLUMNS: tuple[str, ...] = (
    "observation",  # row number, 1-based, in order along the pipe
    "distance_m",  # metres from the start of the survey; empty without a distance source
    "time_s",  # video time of the row (start, or finish for an F row), seconds
    "code",  # EN 13508-2 main code; two alternatives joined by "/" where the class covers both
    "characterisation_1",  # only where the Sewer-ML class pins it (GR, PH, PB); "/" = either
    "characterisation_2",  # never predicted: always empty
    "clock_from",  # 1-12, 12 = crown; the only clock reference for a point-like defect
    "clock_to",  # 1-12, end of the clockwise arc; empty for a point-like defect
    "continuous",  # S01 / F01 (start / finish of continuous defect 01); empty otherwise
    "remarks",
    "snapshot",  # the peak frame's image, relative to the report folder
    "score",  # peak model score of the segment, 0-1
    "severity",  # CIW x peak score, as in the report
    "source_code",  # the model's own code: a Sewer-ML code or CRACK
    "fit",  # direct / split / approximate / none: how well the EN code says the same thing
)


@dataclass(frozen=True)
class CodeMapping:
    """One Sewer-ML (or CRACK) code in EN 13508-2 terms."""

    source_code: str
    en_code: str  # main code; "BAB/BAC" when the source class covers both
    en_name: str
    characterisation_1: str  # "" when the class does not pin it; "C/E" when either
    fit: str  # direct: same meaning; split: covers several EN codes; approximate: nearest; none
    cannot_say: str  # what an inspector must add or check
    remark: str = ""  # the short form the CSV's remarks carry where the fit is not direct


_M = CodeMapping
EN_MAPPING: dict[str, CodeMapping] = {m.source_code: m for m in (
    _M("RB", "BAB/BAC", "crack / break, collapse", "", "split",
       "crack (BAB) or break/collapse (BAC) is not told apart; crack type and width (BAB char. 1 surface crack, "
       "crack, open crack), orientation (char. 2) and widths in mm are not predicted",
       "crack (BAB) or break/collapse (BAC): the class does not tell"),
    _M("OB", "BAF", "surface damage", "", "direct",
       "kind of damage (char. 1: roughness, spalling, aggregate or reinforcement visible, ...) and cause "
       "(char. 2: mechanical, chemical) are not predicted"),
    _M("PF", "BDB", "general remark", "", "none",
       "EN 13508-2 has no main code for a production error; listed as a general remark for an inspector to code",
       "production error: no EN main code, to be coded by an inspector"),
    _M("DE", "BAA", "deformation", "", "direct",
       "direction (char. 1 vertical / horizontal) and the change of cross-section in % are not predicted"),
    _M("FS", "BAJ", "displaced joint", "", "direct",
       "longitudinal, radial or angular (char. 1) and the displacement in mm are not predicted"),
    _M("IS", "BAI", "intruding sealing material", "", "direct",
       "sealing ring or other material (char. 1) and the loss of cross-section are not predicted"),
    _M("RO", "BBA", "roots", "", "direct",
       "tap, fine or complex roots (char. 1) and the loss of cross-section are not predicted"),
    _M("IN", "BBF", "infiltration", "", "direct",
       "seeping, dripping, running or gushing (char. 1) is not predicted"),
    _M("AF", "BBC", "settled deposits", "", "direct",
       "material (char. 1: fine, gravel, hard, other) and the loss of cross-section are not predicted"),
    _M("BE", "BBB", "attached deposits", "", "direct",
       "encrustation, grease, fouling or other (char. 1) and the loss of cross-section are not predicted"),
    _M("FO", "BBE", "other obstacles", "", "direct",
       "what the obstacle is (char. 1) and the loss of cross-section are not predicted"),
    _M("GR", "BCA", "connection", "A", "direct",
       "char. 1 A = junction (factory-made fitting); open or closed (char. 2) and the lateral's diameter are "
       "not predicted"),
    _M("PH", "BCA", "connection", "C/E", "direct",
       "chiselled connection: with a saddle (C) or without (E) is not told apart; char. 2 and diameter not predicted"),
    _M("PB", "BCA", "connection", "B/D", "direct",
       "drilled connection: with a saddle (B) or without (D) is not told apart; char. 2 and diameter not predicted"),
    _M("OS", "BAH", "defective connection", "", "approximate",
       "a lateral reinstatement cut in a lined pipe; which fault (char. 1) and whether a lining code (BAK) "
       "applies instead is not predicted",
       "reinstatement cut in a lined pipe: BAH or a lining code (BAK), to be checked"),
    _M("OP", "BCA", "connection", "", "approximate",
       "a connection with a transition profile: EN has no characterisation for the fitting; recorded as a "
       "connection",
       "connection with a transition profile: no EN characterisation"),
    _M("OK", "BCA", "connection", "", "approximate",
       "a connection with construction changes: EN has no characterisation for it; recorded as a connection",
       "connection with construction changes: no EN characterisation"),
    _M("CRACK", "BAB", "crack", "", "direct",
       "crack type and width classes (char. 1), orientation (char. 2) and size in mm are not coded: the "
       "segmenter measures pixels, given in the remarks"),
)}


def mapping_for(code: str) -> CodeMapping:
    """The EN mapping of a model code; an unknown code maps to a general remark (BDB), fit none."""
    unknown = f"{code} is not a Sewer-ML code: no EN mapping"
    return EN_MAPPING.get(code) or CodeMapping(code, "BDB", "general remark", "", "none", unknown, unknown)


def _distance(segment: dict[str, Any]) -> tuple[float, float] | None:
    start, end = segment.get("start_m"), segment.get("end_m")
    if start is None or end is None:
        return None
    return float(start), float(end)


def is_continuous(segment: dict[str, Any]) -> bool:
    """Longer than 1 m along the pipe, or, without distance, longer than 5 s of video."""
    span = _distance(segment)
    if span is not None:
        return span[1] - span[0] > CONTINUOUS_M
    return float(segment["end_time"]) - float(segment["start_time"]) > CONTINUOUS_S_WITHOUT_DISTANCE


def _clock_cells(segment: dict[str, Any]) -> tuple[str, str]:
    start = segment.get("clock_from")
    if start is None:
        start = segment.get("clock")
    end = segment.get("clock_to")
    return ("" if start is None else str(int(start))), ("" if end is None else str(int(end)))


def _remarks(segment: dict[str, Any], mapping: CodeMapping, continuous: bool) -> str:
    from edgesewer.runtime.report import format_time  # report imports this module

    parts = [f"{segment['code']}: {segment.get('description', '')}".rstrip(": ")]
    if _distance(segment) is None:
        parts.append(f"video {format_time(segment['start_time'])}-{format_time(segment['end_time'])} (no distance)")
        if continuous:
            parts.append(f"continuous by duration (> {CONTINUOUS_S_WITHOUT_DISTANCE:g} s)")
    if segment.get("crack_length_px") is not None:
        parts.append(f"crack {segment['crack_length_px']:.0f} px long, {segment['crack_area_px']:.0f} px area")
    if mapping.fit != "direct":
        parts.append(f"EN code {mapping.fit}: {mapping.remark or mapping.cannot_say}")
    return "; ".join(parts)


def observation_rows(segments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per segment, two (S/F) for a continuous one, sorted along the pipe (or the video)."""
    entries = []  # (position, tie-breaker, row)
    number = 0
    for order, s in enumerate(sorted(segments, key=lambda s: (s["start_frame"], s["code"]))):
        mapping = mapping_for(s["code"])
        continuous = is_continuous(s)
        clock_from, clock_to = _clock_cells(s)
        span = _distance(s)
        base = {
            "code": mapping.en_code,
            "characterisation_1": mapping.characterisation_1,
            "characterisation_2": "",
            "clock_from": clock_from,
            "clock_to": clock_to,
            "remarks": _remarks(s, mapping, continuous),
            "snapshot": s.get("snapshot") or "",
            "score": round(float(s["peak_score"]), 4),
            "severity": round(float(s["severity"]), 4),
            "source_code": s["code"],
            "fit": mapping.fit,
        }
        start_row = {**base, "distance_m": "" if span is None else round(span[0], 2),
                     "time_s": round(float(s["start_time"]), 2), "continuous": ""}
        start_pos = span[0] if span is not None else float(s["start_time"])
        if not continuous:
            entries.append((start_pos, order, 0, start_row))
            continue
        number += 1
        finish_row = {**base, "distance_m": "" if span is None else round(span[1], 2),
                      "time_s": round(float(s["end_time"]), 2), "continuous": f"F{number:02d}"}
        start_row["continuous"] = f"S{number:02d}"
        entries.append((start_pos, order, 0, start_row))
        entries.append((span[1] if span is not None else float(s["end_time"]), order, 1, finish_row))
    entries.sort(key=lambda e: e[:3])
    rows = []
    for index, (_, _, _, row) in enumerate(entries, start=1):
        rows.append({column: row.get(column, "") for column in COLUMNS} | {"observation": index})
    return rows


def observations_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def observations_json(rows: Sequence[dict[str, Any]], segments: Sequence[dict[str, Any]]) -> str:
    used = sorted({r["source_code"] for r in rows})
    sources = sorted({str(s["distance_source"]) for s in segments if s.get("distance_source")})
    data = {
        "format_version": 1,
        "standard": "EN 13508-2 (main codes; crosswalk from Sewer-ML in docs/observations.md)",
        "continuous_rule": (
            f"longer than {CONTINUOUS_M:g} m along the pipe; without distance, longer than "
            f"{CONTINUOUS_S_WITHOUT_DISTANCE:g} s of video (about 1 m at 0.2 m/s)"
        ),
        "distance_source": ", ".join(sources) or None,
        "columns": list(COLUMNS),
        "mapping": {code: asdict(mapping_for(code)) for code in used},
        "observations": [{k: (None if v == "" else v) for k, v in row.items()} for row in rows],
    }
    return json.dumps(data, indent=2) + "\n"
