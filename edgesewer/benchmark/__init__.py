"""Benchmarks: latency, throughput, memory, accuracy and pipeline FPS for every model x precision x backend.

`run_benchmark(BenchmarkOptions(...))` is the plain function behind `edgesewer benchmark`; it writes
benchmark.md / .csv / .json and accuracy_vs_fps.png. Modules: timing (trtexec-style measurement,
peak RSS), machine (what the numbers ran on), artifacts (data, weights, export cache), measure
(one row), sweep (all rows), report and plot (the outputs). Heavy imports happen inside functions.
"""

from edgesewer.benchmark.measure import BenchmarkRow
from edgesewer.benchmark.sweep import BenchmarkOptions, BenchmarkResult, run_benchmark
from edgesewer.benchmark.timing import TimingPlan

__all__ = ["BenchmarkOptions", "BenchmarkResult", "BenchmarkRow", "TimingPlan", "run_benchmark"]
