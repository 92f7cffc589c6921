"""Peak memory of one model, measured in a fresh process.

Inside the sweep's own process, memory freed by earlier rows stays mapped (Python and ONNX Runtime
keep their arenas), so an RSS delta there says little about later rows. So each row starts
`python -m edgesewer.benchmark.memory ...`, which imports what it needs, notes its RSS, loads the
artifact through the runtime backend (or the PyTorch model), runs a few batch-1 inferences, and
prints the resident-memory high-water mark above that baseline as one JSON line. Host memory only:
memory on a GPU is not counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgesewer.errors import EdgesewerError

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
INFERENCES = 3


def _status_kib(field: str) -> int | None:
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), else the lifetime peak as a stand-in."""
    kib = _status_kib("VmRSS")
    return (kib if kib is not None else _maxrss_kib()) / 1024.0


def _reset_peak() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets this process's VmHWM to its current RSS."""
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class PeakRss:
    """`with PeakRss() as mem: ...` then `mem.delta_mb`: the RSS high-water mark above the starting RSS.

    Where the peak cannot be reset (non-Linux) the increase of the lifetime peak is used, a lower
    bound that `exact` flags as False.
    """

    def __init__(self) -> None:
        self.baseline_mb = 0.0
        self.peak_mb = 0.0
        self.exact = False
        self._start_maxrss = 0

    def __enter__(self) -> "PeakRss":
        gc.collect()
        self.baseline_mb = current_rss_mb()
        self.exact = _reset_peak()
        self._start_maxrss = _maxrss_kib()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            self.peak_mb = (_status_kib("VmHWM") or 0) / 1024.0
        else:
            self.peak_mb = self.baseline_mb + max(0, _maxrss_kib() - self._start_maxrss) / 1024.0

    @property
    def delta_mb(self) -> float:
        return max(0.0, self.peak_mb - self.baseline_mb)

    def as_dict(self) -> dict[str, Any]:
        return {"baseline_mb": self.baseline_mb, "peak_mb": self.peak_mb, "delta_mb": self.delta_mb,
                "exact": self.exact}


# ------------------------------------------------------------------------------- the child process
def _artifact_peak(path: str, backend_name: str, threads: int | None) -> PeakRss:
    import numpy as np

    from edgesewer.benchmark.measure import sample_shape
    from edgesewer.runtime.artifact import load_artifact
    from edgesewer.runtime.backends import load_backend

    artifact = load_artifact(path)
    x = np.zeros((1, *sample_shape(artifact.cfg)), np.float32)
    options = {"threads": threads} if backend_name == "ort" else {}
    with PeakRss() as memory:
        backend = load_backend(artifact, backend_name, **options)
        for _ in range(INFERENCES):
            backend.infer(x)
    return memory


def _eager_peak(model: str, weights: str, imgsz: int | None, runs_dir: str, threads: int | None) -> PeakRss:
    import torch

    import edgesewer.models  # noqa: F401 - registry and families imported before the baseline
    from edgesewer.benchmark.measure import sample_shape
    from edgesewer.export.weights import load_for_export

    if threads:
        torch.set_num_threads(threads)
    with PeakRss() as memory:
        loaded = load_for_export(model, weights, imgsz, runs_dir)
        x = torch.zeros(1, *sample_shape(loaded.cfg))
        with torch.inference_mode():
            for _ in range(INFERENCES):
                loaded.model(x)
    return memory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Peak RSS of loading one model and running it at batch 1.")
    parser.add_argument("kind", choices=["artifact", "eager"])
    parser.add_argument("target", help="artifact path, or model name for eager")
    parser.add_argument("--backend", default="ort")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    try:
        if args.kind == "artifact":
            memory = _artifact_peak(args.target, args.backend, args.threads)
        else:
            memory = _eager_peak(args.target, args.weights, args.imgsz, args.runs_dir, args.threads)
    except EdgesewerError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(memory.as_dict()))


# ------------------------------------------------------------------------------- the parent side
def probe_peak_memory(kind: str, target: str | Path, *, backend: str = "ort", threads: int | None = None,
                      weights: str = "random", imgsz: int | None = None, runs_dir: str | Path = "runs",
                      timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the probe in a fresh interpreter; returns {"baseline_mb", "peak_mb", "delta_mb", "exact"}."""
    command = [sys.executable, "-m", "edgesewer.benchmark.memory", kind, str(target), "--backend", backend,
               "--weights", str(weights), "--runs-dir", str(runs_dir)]
    command += ["--threads", str(threads)] if threads else []
    command += ["--imgsz", str(imgsz)] if imgsz else []
    package_root = str(Path(__file__).resolve().parents[2])  # a source checkout works without installing
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise EdgesewerError(f"memory probe timed out after {timeout_s:g} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise EdgesewerError(f"memory probe failed: {tail}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    main()
