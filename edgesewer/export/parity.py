"""Does the exported graph compute what the PyTorch model computes? Checked on real images.

Classifiers: max |logit difference| and per-class decision agreement at probability 0.5
(logit >= 0) over every (image, class) pair; both are gated. Segmenter: the F1 and IoU of the
ONNX crack mask against the PyTorch mask at 0.5 (1.0 = identical masks) are gated; the max
|probability difference| is reported but not gated, because max-pooling switches flip where two
activations in a window nearly tie (a 1e-6 difference moves a whole unpooled value). Pixels that
PyTorch itself puts within AMBIGUOUS of 0.5 are left out of the masks: a barely trained model puts
much of a tile there, and which side of 0.5 they land on is rounding, not a wrong graph.
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


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    decision_agreement: float  # classifiers: share of (image, class) decisions equal; segmenter: mask F1
    images: int
    iou: float | None = None  # segmenter only

    def as_dict(self) -> dict[str, Any]:
        finite = bool(np.isfinite(self.max_abs_diff))
        d: dict[str, Any] = {
            "max_abs_diff": float(self.max_abs_diff) if finite else None,  # JSON has no Infinity
            "decision_agreement": float(self.decision_agreement),
            "images": int(self.images),
        }
        if self.iou is not None:
            d["mask_iou"] = float(self.iou)
        if not finite:
            d["non_finite_outputs"] = True
        return d

    def passes(self, max_abs_diff: float = MAX_ABS_DIFF, min_agreement: float = MIN_AGREEMENT) -> bool:
        if self.iou is not None:  # segmenter: mask agreement only (see module docstring)
            return self.decision_agreement >= min_agreement
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
        return ParityResult(float("inf"), 0.0, len(reference), 0.0 if task == "segment" else None)
    diff = float(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)).max())
    if task == "segment":
        decided = np.abs(reference - 0.5) >= AMBIGUOUS
        ref_mask, cand_mask = (reference >= 0.5) & decided, (candidate >= 0.5) & decided
        both = int((ref_mask & cand_mask).sum())
        either = int((ref_mask | cand_mask).sum())
        total = int(ref_mask.sum() + cand_mask.sum())
        f1 = 1.0 if total == 0 else 2 * both / total
        iou = 1.0 if either == 0 else both / either
        return ParityResult(diff, f1, len(reference), iou)
    agreement = float(((reference >= 0) == (candidate >= 0)).mean())
    return ParityResult(diff, agreement, len(reference))


def require_parity(result: ParityResult, what: str) -> None:
    """Fail loudly when the fp32 graph does not reproduce PyTorch."""
    if result.passes():
        return
    if result.iou is not None:
        raise ExportError(f"parity check failed for {what} on {result.images} images: crack-mask F1 against PyTorch "
                          f"{result.decision_agreement:.4f} (limit {MIN_AGREEMENT}), IoU {result.iou:.4f}")
    raise ExportError(
        f"parity check failed for {what} on {result.images} images: max abs diff {result.max_abs_diff:.3g} "
        f"(limit {MAX_ABS_DIFF:g}), decision agreement {result.decision_agreement:.4f} (limit {MIN_AGREEMENT})"
    )
