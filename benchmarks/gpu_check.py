"""On a machine with an NVIDIA GPU: the checks no CPU machine can make, in under 10 minutes, one table.

    python benchmarks/gpu_check.py                 # everything, within a 10-minute budget
    python benchmarks/gpu_check.py --skip-tests    # training steps and eager timing only

1. the `gpu`-marked tests (real TensorRT engines vs ONNX Runtime), when TensorRT is installed;
2. CUDA training steps with AMP through the project's `Trainer` (bf16, or fp16 + GradScaler) for
   vit-t and scnet: finite losses, steps per second, peak GPU memory;
3. PyTorch eager inference on the GPU (fp32 and autocast fp16, batch 1 and 8): median latency.

Without an NVIDIA GPU it says so and exits with status 2 (the CPU-safe parts are unit-tested in
tests/test_gpu_check.py). Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout without install

BUDGET_S = 600.0
MODELS = {"vit-t": {"img_size": 224}, "scnet": {}}
INPUT = {"vit-t": (3, 224, 224), "scnet": (4, 256, 256)}  # scnet: RGB + edge map, sides divisible by 32


@dataclass
class Row:
    check: str
    subject: str
    ok: bool
    result: str


def find_gpu(run: Callable = subprocess.run, which: Callable = shutil.which) -> str | None:
    """The first NVIDIA GPU's name from `nvidia-smi -L`, or None (no driver, no GPU)."""
    if which("nvidia-smi") is None:
        return None
    try:
        out = run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"GPU 0: (.+?)(?: \(UUID|$)", out.stdout or "", re.MULTILINE)
    return match.group(1).strip() if out.returncode == 0 and match else None


def pytest_summary(output: str) -> tuple[int, int, int]:
    """(passed, failed or errored, skipped) from pytest's last line."""
    counts = {key: 0 for key in ("passed", "failed", "error", "errors", "skipped")}
    for number, key in re.findall(r"(\d+) (passed|failed|errors?|skipped)", output.splitlines()[-1] if output else ""):
        counts[key] += int(number)
    return counts["passed"], counts["failed"] + counts["error"] + counts["errors"], counts["skipped"]


def format_table(rows: list[Row]) -> str:
    """One plain-text table (it goes into logs and the README as is)."""
    header = ("check", "subject", "status", "result")
    cells = [header] + [(r.check, r.subject, "ok" if r.ok else "FAIL", r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_gpu_tests(timeout_s: float) -> Row:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return Row("gpu tests", "pytest -m gpu", False, "TensorRT is not installed (pip install tensorrt)")
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Row("gpu tests", "pytest -m gpu", False, f"did not finish in {timeout_s:.0f} s")
    passed, failed, skipped = pytest_summary(done.stdout.strip())
    ok = done.returncode == 0 and passed > 0
    return Row("gpu tests", "pytest -m gpu", ok, f"{passed} passed, {failed} failed, {skipped} skipped")


def train_steps(name: str, steps: int = 20, batch: int = 16) -> Row:
    """`steps` optimiser steps of `name` on random data through the Trainer, AMP on."""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from edgesewer.models import create_model
    from edgesewer.train import schedules
    from edgesewer.train.engine import Trainer, TrainConfig

    model = create_model(name, **MODELS[name])
    torch.manual_seed(0)
    x = torch.rand(steps * batch, *INPUT[name])
    with torch.no_grad():
        model.eval()
        probe = model(x[:2])
    model.train()
    target_shape = (probe if isinstance(probe, torch.Tensor) else next(iter(probe.values())))[0].shape
    y = (torch.rand(len(x), *target_shape) > 0.5).float()

    def loss_fn(out, target):
        logits = out["fused"] if isinstance(out, dict) else out  # scnet trains on a dict of logits
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), target)

    losses: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=1, batch_size=batch, amp=True, device="cuda", num_workers=0, monitor="loss",
                          monitor_mode="min", out_dir=Path(out), progress=False)
        trainer = Trainer(model, TensorDataset(x, y), TensorDataset(x[:batch], y[:batch]), loss_fn=loss_fn,
                          optimizer_factory=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-4),
                          scheduler_factory=schedules.onecycle(1e-4),
                          evaluate_fn=lambda m, loader, device: {"loss": 0.0}, cfg=cfg, model_cfg=model.cfg,
                          callbacks={"on_batch_end": [lambda t, loss: losses.append(float(loss))]})
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.fit()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    dtype = str(trainer.amp_dtype).replace("torch.", "")
    finite = bool(losses) and all(v == v and abs(v) != float("inf") for v in losses)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return Row("train AMP", name, finite and trainer.amp_dtype is not None,
               f"{len(losses)} steps, batch {batch}, {dtype}: {len(losses) / elapsed:.1f} steps/s, "
               f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, peak {peak:.2f} GiB")


def eager_latency(name: str, runs: int = 30) -> list[Row]:
    """Median GPU latency of the eval-mode model, fp32 and autocast fp16, batch 1 and 8."""
    import torch

    from edgesewer.models import create_model

    model = create_model(name, **MODELS[name]).cuda().eval()
    rows = []
    for batch in (1, 8):
        x = torch.rand(batch, *INPUT[name], device="cuda")
        timings = {}
        for label, dtype in (("fp32", None), ("fp16", torch.float16)):
            times = []
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                for i in range(runs + 5):
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    model(x)
                    torch.cuda.synchronize()
                    if i >= 5:  # warm-up: cuDNN autotuning and allocations
                        times.append((time.perf_counter() - start) * 1e3)
            timings[label] = statistics.median(times)
        rows.append(Row("eager GPU", f"{name} b{batch}", True,
                        f"fp32 {timings['fp32']:.2f} ms, fp16 {timings['fp16']:.2f} ms "
                        f"({batch * 1e3 / timings['fp16']:.0f} img/s fp16)"))
    return rows


def main(argv: list[str] | None = None, gpu_finder: Callable[[], str | None] = find_gpu) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true", help="skip the gpu-marked pytest run")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything (default 600)")
    args = parser.parse_args(argv)
    gpu = gpu_finder()
    if gpu is None:
        print("no NVIDIA GPU here (nvidia-smi finds none): run this on the GPU machine or the Jetson", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(f"nvidia-smi sees {gpu}, but this PyTorch has no CUDA ({torch.__version__}): install a CUDA build",
              file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.budget
    print(f"{gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    rows: list[Row] = []
    if not args.skip_tests:
        rows.append(run_gpu_tests(timeout_s=max(60.0, 0.4 * args.budget)))
    for name in MODELS:
        for check in (lambda n=name: [train_steps(n)], lambda n=name: eager_latency(n)):
            if time.monotonic() > deadline:
                rows.append(Row("budget", name, False, f"out of the {args.budget:.0f} s budget: skipped"))
                break
            try:
                rows += check()
            except Exception as exc:  # noqa: BLE001 - one failed check is a table row, not the end of the run
                rows.append(Row("error", name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"))
    print(format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
