"""The label sets of every task, in one place.

Sewer-ML: 17 defect codes in the official column order, their meanings and the
class-importance weights (CIW) of the official benchmark (Haurum & Moeslund, CVPR 2021,
`calculate_results.py`). "Normal" is not a column: a frame is normal when no code is set.
"""

from __future__ import annotations

import numpy as np

# Official column order of SewerML_*.csv (VA and ND are not classes).
SEWER_CODES: tuple[str, ...] = (
    "RB", "OB", "PF", "DE", "FS", "IS", "RO", "IN", "AF",
    "BE", "FO", "GR", "PH", "PB", "OS", "OP", "OK",
)

SEWER_DESCRIPTIONS: dict[str, str] = {
    "RB": "cracks, breaks and collapses",
    "OB": "surface damage",
    "PF": "production error",
    "DE": "deformation",
    "FS": "displaced joint",
    "IS": "intruding sealing material",
    "RO": "roots",
    "IN": "infiltration",
    "AF": "settled deposits",
    "BE": "attached deposits",
    "FO": "obstacle",
    "GR": "branch pipe",
    "PH": "chiseled connection",
    "PB": "drilled connection",
    "OS": "lateral reinstatement cuts",
    "OP": "connection with transition profile",
    "OK": "connection with construction changes",
}

# Class-importance weights, normalised by the largest (RB); official benchmark values.
CIW: dict[str, float] = {
    "RB": 1.0000, "OB": 0.5518, "PF": 0.2896, "DE": 0.1622, "FS": 0.6419,
    "IS": 0.1847, "RO": 0.3559, "IN": 0.3131, "AF": 0.0811, "BE": 0.2275,
    "FO": 0.2477, "GR": 0.0901, "PH": 0.4167, "PB": 0.4167, "OS": 0.9009,
    "OP": 0.3829, "OK": 0.4396,
}

# The full header of the official CSVs; only Filename and the 17 codes are read.
SEWER_CSV_HEADER: tuple[str, ...] = (
    "Filename", "WaterLevel", "VA", *SEWER_CODES, "ND", "Defect",
)

# Classes MA-Q2L up-weights in its asymmetric loss (alpha = 2).
BOTTLENECK_CODES: frozenset[str] = frozenset({"RB", "IS", "FO", "OS"})

# SFR-Net zero-shot split on Sewer-ML.
ZS_SEEN: tuple[str, ...] = ("RB", "OB", "PF", "DE", "FS", "RO", "IN", "AF", "BE", "GR", "PH", "OK")
ZS_UNSEEN: tuple[str, ...] = ("PB", "IS", "OP", "FO", "OS")

# VideoPipe / QV-Pipe track-1 classes in the official index order; ZC (normal) is exclusive.
VIDEOPIPE_CODES: tuple[str, ...] = (
    "ZC", "CJ", "CK", "ZW", "JG", "SG", "PL", "BX", "CR",
    "FZ", "FS", "AJ", "CQ", "SL", "QF", "TJ", "TL",
)
VIDEOPIPE_NORMAL = "ZC"


def ciw_vector(codes: tuple[str, ...] = SEWER_CODES) -> np.ndarray:
    """CIW weights as a float64 vector in the order of `codes`."""
    return np.array([CIW[c] for c in codes], dtype=np.float64)


def code_index(code: str) -> int:
    """Column index of a Sewer-ML code; raises KeyError with the valid codes."""
    try:
        return SEWER_CODES.index(code)
    except ValueError:
        raise KeyError(f"unknown Sewer-ML code {code!r}; valid: {' '.join(SEWER_CODES)}") from None
