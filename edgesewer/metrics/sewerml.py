"""Sewer-ML benchmark metrics (Haurum & Moeslund, CVPR 2021), numpy only.

Follows the official `metrics.py` (bitbucket aauvap/sewer-ml) so that numbers are comparable
with published results, with three documented differences that only matter in corner cases:

* any NaN (a class with no positives, an empty sum) counts as 0 everywhere, including the
  class-mean precision/recall CP and CR, which the official code lets turn into NaN;
* AP ties are broken in row order (stable descending sort: of two equal scores the earlier row
  ranks first); the official code uses the reversed order of an unstable quicksort;
* the threshold given is used for every decision, exact-match accuracy included (the official
  code always uses 0.5 there). At the benchmark threshold 0.5 the two agree.

The implicit "normal" class (no positive label / no score >= threshold) is the 18th class in
OP, OR, OF1, CP, CR, CF1, MF1 and mF1, as in the official code; F2_CIW and mAP use the 17
defect classes only. Inputs are never modified.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from edgesewer.errors import DataError
from edgesewer.taxonomy import CIW, SEWER_CODES


def _as_columns(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 1-D or 2-D array, got shape {arr.shape}")
    return arr


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Non-interpolated (ML-GCN style) average precision of every column.

    Rows are ranked by descending score; at each positive, precision at that rank (positives
    so far / rank) is added, and the sum is divided by the number of positives (AP = 0 for a
    column without positives). Ties keep row order: the sort is stable on the negated scores,
    so of two equal scores the earlier row is ranked first. Targets equal to 1 are positives;
    anything else (0, or -1 as some losses encode it) is negative.

    Args:
        scores: (N, K) or (N,) scores; higher means more likely positive.
        targets: same shape as `scores`.

    Returns:
        (K,) float64 array (a 1-D input is one column, so the result has shape (1,)).
    """
    s = _as_columns(scores, "scores").astype(np.float64, copy=False)
    t = _as_columns(targets, "targets")
    if s.shape != t.shape:
        raise DataError(f"scores {s.shape} and targets {t.shape} differ in shape")
    order = np.argsort(-s, axis=0, kind="stable")
    positive = np.take_along_axis(t == 1, order, axis=0)
    hits = np.cumsum(positive, axis=0)
    ranks = np.arange(1, s.shape[0] + 1, dtype=np.float64)[:, None]
    # Precision is only summed at positive ranks, which is the same as stopping at the last one.
    summed = np.where(positive, hits / ranks, 0.0).sum(axis=0)
    n_pos = positive.sum(axis=0)
    return np.divide(summed, n_pos, out=np.zeros_like(summed), where=n_pos > 0)


def _nan_to_zero(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _f_beta(p: np.ndarray, r: np.ndarray, beta: float) -> np.ndarray:
    b2 = beta * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_to_zero((1 + b2) * p * r / (b2 * p + r))


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_to_zero(np.asarray(num, dtype=np.float64) / np.asarray(den, dtype=np.float64))


def evaluate_sewerml(
    scores: np.ndarray,
    targets: np.ndarray,
    threshold: float = 0.5,
    codes: tuple[str, ...] = SEWER_CODES,
) -> dict[str, Any]:
    """All Sewer-ML metrics for N x 17 sigmoid scores against N x 17 0/1 targets (rows aligned).

    A class is predicted when its score is >= `threshold`. Per class: Ng = #targets,
    Np = #predicted, Nc = #correct; P = Nc / max(Np, 1), R = Nc / Ng, F_beta from P and R;
    NaN -> 0. The counts reported are the real ones (an empty prediction column shows Np = 0);
    the official "Np == 0 -> 1" is applied inside the sums of OP and mF1, as the official does.

    Returns:
        A dict of plain floats/ints (JSON-ready), all metrics as fractions in [0, 1]:
        `F2_CIW`, `F1_Normal`, `mAP`; `OP, OR, OF1, CP, CR, CF1, MF1, mF1, EMAcc`;
        `per_class` {code: {P, R, F1, F2, AP, Ng, Np, Nc}}; `normal` {P, R, F1, F2, Ng, Np, Nc};
        `n_images`, `threshold`.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape[1] != len(codes):
        raise DataError(f"scores must have shape (N, {len(codes)}), got {s.shape}")
    if t.shape != s.shape:
        raise DataError(f"scores {s.shape} and targets {t.shape} differ in shape")
    if s.shape[0] == 0:
        raise DataError("no rows to evaluate")
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or infinite values")

    truth = t == 1  # -1 (MultiLabelSoftMargin encoding) counts as negative, as in the official code
    predicted = s >= threshold
    # The implicit normal class is appended as column 18.
    truth18 = np.column_stack([truth, ~truth.any(axis=1)])
    pred18 = np.column_stack([predicted, ~predicted.any(axis=1)])

    ng = truth18.sum(axis=0).astype(np.int64)
    np_raw = pred18.sum(axis=0).astype(np.int64)
    nc = (truth18 & pred18).sum(axis=0).astype(np.int64)
    np_safe = np.maximum(np_raw, 1)

    precision = _ratio(nc, np_safe)
    recall = _ratio(nc, ng)
    f1 = _f_beta(precision, recall, 1.0)
    f2 = _f_beta(precision, recall, 2.0)
    ap = average_precision(s, truth.astype(np.int8))

    weights = np.array([CIW[c] for c in codes], dtype=np.float64)
    op = float(_ratio(nc.sum(), np_safe.sum()))
    orec = float(_ratio(nc.sum(), ng.sum()))
    cp, cr = float(precision.mean()), float(recall.mean())

    result: dict[str, Any] = {
        "F2_CIW": float((f2[:-1] * weights).sum() / weights.sum()),
        "F1_Normal": float(f1[-1]),
        "mAP": float(ap.mean()),
        "OP": op,
        "OR": orec,
        "OF1": float(_f_beta(np.float64(op), np.float64(orec), 1.0)),
        "CP": cp,
        "CR": cr,
        "CF1": float(_f_beta(np.float64(cp), np.float64(cr), 1.0)),
        "MF1": float(f1.mean()),
        "mF1": float(_ratio(2 * nc.sum(), np_safe.sum() + ng.sum())),
        "EMAcc": float((predicted == truth).all(axis=1).mean()),
        "n_images": int(s.shape[0]),
        "threshold": float(threshold),
    }

    def counts(k: int) -> dict[str, Any]:
        return {"P": float(precision[k]), "R": float(recall[k]), "F1": float(f1[k]), "F2": float(f2[k]),
                "Ng": int(ng[k]), "Np": int(np_raw[k]), "Nc": int(nc[k])}

    result["per_class"] = {code: {**counts(k), "AP": float(ap[k])} for k, code in enumerate(codes)}
    result["normal"] = counts(len(codes))
    return result


def format_sewerml_table(result: dict[str, Any], title: str = "Sewer-ML metrics") -> Table:
    """A rich Table: one row per class (CIW, P, R, F1, F2, AP in %, counts), the normal row,
    and the headline metrics in the caption."""
    # No vertical rules and one-sided padding keep the 10 columns inside an 80-column terminal.
    table = Table(title=title, caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("class")
    table.add_column("CIW", justify="right", no_wrap=True)
    for name in ("P", "R", "F1", "F2", "AP"):
        table.add_column(f"{name} %", justify="right")
    for name in ("Ng", "Np", "Nc"):
        table.add_column(name, justify="right")

    def pct(x: float) -> str:
        return f"{100 * x:.2f}"

    for code, m in result["per_class"].items():
        ciw = f"{CIW[code]:.4f}" if code in CIW else ""
        table.add_row(code, ciw, pct(m["P"]), pct(m["R"]), pct(m["F1"]), pct(m["F2"]), pct(m["AP"]),
                      str(m["Ng"]), str(m["Np"]), str(m["Nc"]))
    n = result["normal"]
    table.add_section()
    table.add_row("Normal", "", pct(n["P"]), pct(n["R"]), pct(n["F1"]), pct(n["F2"]), "",
                  str(n["Ng"]), str(n["Np"]), str(n["Nc"]))

    r = result
    table.caption = "\n".join([  # short lines: the caption's width would widen the table
        f"F2_CIW {pct(r['F2_CIW'])}  F1_Normal {pct(r['F1_Normal'])}  mAP {pct(r['mAP'])}",
        f"({r['n_images']} images, threshold {r['threshold']:g})",
        f"OP {pct(r['OP'])}  OR {pct(r['OR'])}  OF1 {pct(r['OF1'])}",
        f"CP {pct(r['CP'])}  CR {pct(r['CR'])}  CF1 {pct(r['CF1'])}",
        f"MF1 {pct(r['MF1'])}  mF1 {pct(r['mF1'])}  EMAcc {pct(r['EMAcc'])}",
    ])
    return table


def render_table_text(table: Table, width: int = 100) -> str:
    """Render a rich Table to plain text (no colour codes), e.g. for a log file or a test."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def sewerml_report_text(result: dict[str, Any], width: int = 100) -> str:
    """`format_sewerml_table` rendered to plain text."""
    return render_table_text(format_sewerml_table(result), width=width)
