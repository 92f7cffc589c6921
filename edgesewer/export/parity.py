"""Does the exported graph compute what the PyTorch model computes? Checked on real images.

Classifiers: max |logit difference| and per-class decision agreement at probability 0.5
(logit >= 0) over every (image, class) pair; both are gated. Segmenter: the mean |probability
difference| is gated (a wrong graph moves most pixels), and so are the masks at 0.5: their F1 (1.0 =
identical masks) or, where the F1 rests on few crack pixels, the share of pixels whose decision flips.
The max |probability difference| is reported but not gated, because max-pooling switches flip where
two activations in a window nearly tie (a 1e-6 difference moves a whole unpooled value). Pixels that
PyTorch itself puts within AMBIGUOUS of 0.5 are left out of the masks: a barely trained model puts
much of a tile there, and which side of 0.5 they land on is rounding, not a wrong graph.
Measured on the full demo's barely trained scnet (2,525 crack pixels of 524,288, most of the map
between 0.36 and 0.5): ONNX Runtime flipped 14 pixels (F1 0.9948, mean |diff| 3.2e-4; 29,032 pixels
moved > 1e-3), the order PyTorch shows against itself when its input moves by a relative 1e-4 (F1
0.9985; 66,402 pixels moved > 1e-3).
The fp32 artifact must pass; other precisions are measured against the same PyTorch outputs
and reported, not gated (their accuracy report says whether they are good enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesewer.errors import ExportError

MAX_ABS_DIFF = 1e-3
MIN_AGREEMENT = 0.995
AMBIGUOUS = 0.02  # segmenter: |PyTorch probability - 0.5| below this is not a decision either side can get wrong
MAX_MEAN_DIFF = 1e-3  # segmenter: mean |probability difference|
MAX_FLIPPED = 1e-4  # segmenter: share of pixels whose mask decision may flip when the F1 is below MIN_AGREEMENT


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    decision_agreement: float  # classifiers: share of (image, class) decisions equal; segmenter: mask F1
    images: int
    iou: float | None = None  # segmenter only
    mean_abs_diff: float | None = None  # segmenter only
    flipped: float | None = None  # segmenter only: share of all pixels whose mask decision differs

    def as_dict(self) -> dict[str, Any]:
        finite = bool(np.isfinite(self.max_abs_diff))
        d: dict[str, Any] = {
            "max_abs_diff": float(self.max_abs_diff) if finite else None,  # JSON has no Infinity
            "decision_agreement": float(self.decision_agreement),
            "images": int(self.images),
        }
        if self.iou is not None:
            d["mask_iou"] = float(self.iou)
        if self.mean_abs_diff is not None and np.isfinite(self.mean_abs_diff):
            d["mean_abs_diff"] = float(self.mean_abs_diff)
        if self.flipped is not None:
            d["flipped_share"] = float(self.flipped)
        if not finite:
            d["non_finite_outputs"] = True
        return d

    def passes(self, max_abs_diff: float = MAX_ABS_DIFF, min_agreement: float = MIN_AGREEMENT) -> bool:
        if self.iou is not None:  # segmenter: see the module docstring
            close = self.mean_abs_diff is not None and self.mean_abs_diff <= MAX_MEAN_DIFF
            masks_agree = self.decision_agreement >= min_agreement or (self.flipped is not None
                                                                      and self.flipped <= MAX_FLIPPED)
            return close and masks_agree
        return self.max_abs_diff < max_abs_diff and self.decision_agreement >= min_agreement


def torch_outputs(model, cfg, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    """The model's main output (logits or crack probability) for `inputs`, as float32 numpy."""
    import torch

    from edgesewer.export.onnx_export import ExportWrapper

    wrapper = ExportWrapper(model, cfg).eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            chunks.append(wrapper(torch.from_numpy(inputs[start:start + batch]))[0].float().numpy())
    return np.concatenate(chunks)


def onnx_outputs(path: str | Path, inputs: np.ndarray, batch: int = 8, threads: int = 0) -> np.ndarray:
    """The first graph output for `inputs`, run through ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    try:
        chunks = [session.run(None, {name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated classes; a broken graph is one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{Path(path).name}: ONNX Runtime cannot run the exported graph ({first}); "
                          "if it was simplified, retry with --no-simplify") from None
    return np.concatenate(chunks).astype(np.float32)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, task: str) -> ParityResult:
    """Compare two output batches of the same model (see the module docstring for the measures)."""
    if reference.shape != candidate.shape:
        raise ExportError(f"parity: output shapes differ, PyTorch {reference.shape} vs ONNX {candidate.shape}")
    if not np.isfinite(candidate).all():
        if task == "segment":
            return ParityResult(float("inf"), 0.0, len(reference), 0.0, float("inf"), 1.0)
        return ParityResult(float("inf"), 0.0, len(reference))
    abs_diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    diff = float(abs_diff.max())
    if task == "segment":
        decided = np.abs(reference - 0.5) >= AMBIGUOUS
        ref_mask, cand_mask = (reference >= 0.5) & decided, (candidate >= 0.5) & decided
        both = int((ref_mask & cand_mask).sum())
        either = int((ref_mask | cand_mask).sum())
        total = int(ref_mask.sum() + cand_mask.sum())
        f1 = 1.0 if total == 0 else 2 * both / total
        iou = 1.0 if either == 0 else both / either
        flipped = (either - both) / reference.size
        mean = float(abs_diff.mean())
        return ParityResult(diff, f1, len(reference), iou, mean, flipped)
    agreement = float(((reference >= 0) == (candidate >= 0)).mean())
    return ParityResult(diff, agreement, len(reference))


def require_parity(result: ParityResult, what: str) -> None:
    """Fail loudly when the fp32 graph does not reproduce PyTorch."""
    if result.passes():
        return
    if result.iou is not None:
        raise ExportError(f"parity check failed for {what} on {result.images} images: mean |probability diff| "
                          f"{result.mean_abs_diff:.2g} (limit {MAX_MEAN_DIFF:g}); crack-mask F1 against PyTorch "
                          f"{result.decision_agreement:.4f} (limit {MIN_AGREEMENT}) with {100 * result.flipped:.3g} % "
                          f"of pixels flipped (limit {100 * MAX_FLIPPED:g} %), IoU {result.iou:.4f}")
    raise ExportError(
        f"parity check failed for {what} on {result.images} images: max abs diff {result.max_abs_diff:.3g} "
        f"(limit {MAX_ABS_DIFF:g}), decision agreement {result.decision_agreement:.4f} (limit {MIN_AGREEMENT})"
    )
