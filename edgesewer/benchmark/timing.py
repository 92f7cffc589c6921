"""Timing primitives of the benchmark, trtexec style.

`measure` warms up for a stated time, then times calls until both a minimum number of runs and a
minimum duration are reached (capped by a maximum duration, so a slow model on a CPU still ends),
and reports median/p90/p99 latency plus throughput = inferences / timed wall clock, as trtexec
does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgesewer.errors import EdgesewerError


@dataclass(frozen=True)
class TimingPlan:
    """How long to warm up and how much to time (trtexec: --warmUp, --iterations, --duration)."""

    warmup_s: float = 2.0
    min_s: float = 5.0
    min_iters: int = 50
    max_s: float = 60.0  # stop after this even below min_iters (the runs actually made are reported)

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.min_s < 0:
            raise EdgesewerError(f"--warmup-s and --min-s must be >= 0, got {self.warmup_s:g} and {self.min_s:g}")
        if self.min_iters < 1:
            raise EdgesewerError(f"--min-iters must be >= 1, got {self.min_iters}")
        if self.max_s < self.min_s:
            raise EdgesewerError(f"--max-s ({self.max_s:g}) must be >= --min-s ({self.min_s:g})")

    def for_batch(self, batch: int) -> "TimingPlan":
        """Larger batches: the same durations, proportionally fewer runs (each does `batch` inferences)."""
        return TimingPlan(self.warmup_s, self.min_s, max(5, math.ceil(self.min_iters / batch)), self.max_s)

    def describe(self) -> str:
        return (f">= {self.warmup_s:g} s warm-up, then timed until >= {self.min_iters} runs and >= {self.min_s:g} s "
                f"(at most {self.max_s:g} s)")


@dataclass
class LatencyStats:
    """Per-call latency of one measured configuration; throughput counts inferences (batch x runs)."""

    batch: int
    runs: int
    warmup_runs: int
    warmup_s: float
    timed_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @property
    def throughput(self) -> float:
        """Inferences per second over the timed wall clock (trtexec's definition)."""
        return self.batch * self.runs / self.timed_s if self.timed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput}


def latency_percentiles_ms(samples_s: list[float] | np.ndarray) -> tuple[float, float, float]:
    """(p50, p90, p99) in milliseconds of per-call durations in seconds (linear interpolation)."""
    values = np.asarray(samples_s, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1000.0
    return float(p50), float(p90), float(p99)


def measure(fn: Callable[[], object], plan: TimingPlan, batch: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> LatencyStats:
    """Warm up, then time `fn()` until `plan` is satisfied; every call is one sample."""
    start = clock()
    warmup_runs = 0
    while warmup_runs == 0 or clock() - start < plan.warmup_s:
        fn()
        warmup_runs += 1
    warmed = clock() - start
    samples: list[float] = []
    timed_start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - timed_start
        if (len(samples) >= plan.min_iters and elapsed >= plan.min_s) or elapsed >= plan.max_s:
            break
    p50, p90, p99 = latency_percentiles_ms(samples)
    values = np.asarray(samples) * 1000.0
    return LatencyStats(batch=batch, runs=len(samples), warmup_runs=warmup_runs, warmup_s=warmed, timed_s=elapsed,
                        p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=float(values.mean()),
                        min_ms=float(values.min()), max_ms=float(values.max()))


def best_throughput(stats: list[LatencyStats]) -> LatencyStats:
    """The measured batch size with the highest inferences per second."""
    if not stats:
        raise ValueError("no throughput measurements")
    return max(stats, key=lambda s: s.throughput)
