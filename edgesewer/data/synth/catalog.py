"""Which painter draws each of the 17 Sewer-ML codes, and where on the pipe it may go."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgesewer.data.synth import connections as con
from edgesewer.data.synth import defects as wall
from edgesewer.data.synth import objects as obj
from edgesewer.data.synth.defects import Defect, Site
from edgesewer.taxonomy import SEWER_CODES

DEG = math.pi / 180.0


@dataclass(frozen=True)
class Kind:
    """How to make one code and where it lives.

    `where`: "wall" anywhere off the invert, "crown" upper wall, "side" where laterals enter,
    "joint" on a pipe joint (angle from `sectors`), "floor" on the invert, "global" the whole view.
    """

    make: Callable[[np.random.Generator, Site], Defect]
    where: str
    sectors: tuple[tuple[float, float], ...]  # allowed anchor angles in degrees (0 right, 90 invert)
    depth: tuple[float, float] = (0.9, 2.1)  # anchor distance (radii) in still frames: near enough to see


_OFF_INVERT = ((150.0, 390.0),)
_UPPER = ((195.0, 345.0),)
_LATERAL = ((165.0, 245.0), (295.0, 375.0))

KINDS: dict[str, Kind] = {
    "RB": Kind(wall.make_rb, "wall", _OFF_INVERT),
    "OB": Kind(wall.make_ob, "wall", _OFF_INVERT),
    "PF": Kind(wall.make_pf, "wall", _OFF_INVERT),
    "DE": Kind(obj.make_de, "global", ((270.0, 270.0),), (0.6, 1.4)),
    "FS": Kind(wall.make_fs, "joint", ((140.0, 400.0),)),
    "IS": Kind(obj.make_is, "joint", ((180.0, 360.0),)),
    "RO": Kind(obj.make_ro, "joint", ((180.0, 360.0),)),
    "IN": Kind(wall.make_in, "joint", ((195.0, 250.0), (290.0, 345.0))),
    "AF": Kind(obj.make_af, "floor", ((90.0, 90.0),), (1.2, 2.1)),
    "BE": Kind(wall.make_be, "crown", ((205.0, 335.0),), (1.1, 2.0)),
    "FO": Kind(obj.make_fo, "floor", ((90.0, 90.0),), (0.9, 1.6)),
    "GR": Kind(con.make_gr, "side", _LATERAL),
    "PH": Kind(con.make_ph, "side", _LATERAL),
    "PB": Kind(con.make_pb, "side", _LATERAL, (0.9, 1.7)),
    "OS": Kind(con.make_os, "side", _LATERAL),
    "OP": Kind(con.make_op, "side", _LATERAL),
    "OK": Kind(con.make_ok, "side", _LATERAL),
}
assert tuple(KINDS) == SEWER_CODES  # one painter per code, in the official order

CONNECTION_CODES: frozenset[str] = frozenset(c for c, k in KINDS.items() if k.where == "side")
JOINT_CODES: frozenset[str] = frozenset(c for c, k in KINDS.items() if k.where == "joint")
FLOOR_CODES: frozenset[str] = frozenset(c for c, k in KINDS.items() if k.where == "floor")


def sample_angle(rng: np.random.Generator, code: str) -> float:
    """An anchor angle (radians) from the code's allowed sectors, weighted by their width."""
    sectors = KINDS[code].sectors
    widths = np.array([hi - lo for lo, hi in sectors], np.float64) + 1e-9
    lo, hi = sectors[int(rng.choice(len(sectors), p=widths / widths.sum()))]
    return float(rng.uniform(lo, hi) * DEG) % (2 * math.pi)
