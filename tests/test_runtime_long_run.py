"""Memory stays flat on a long run: closed segments keep an encoded snapshot, not their peak frame
(`benchmarks/long_run_memory.py` at a smaller count, with the bytes still allocated counted exactly
by tracemalloc: RSS alone hides a few dozen retained frames in the heap malloc keeps)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from long_run_memory import long_run  # noqa: E402


def test_memory_stays_flat_over_many_segments(tmp_path):
    # 200 frames of 640x480 with a defect every 20 frames: 10 segments with a snapshot each. Holding
    # each segment's peak frame would leave 8 x 0.88 MiB = 7 MiB more allocated at the end than at frame 40.
    r = long_run(frames=200, width=640, height=480, warmup=40, workdir=tmp_path, trace=True)
    assert (r["frames"], r["segments"], r["snapshots"]) == (200, 10, 10)
    assert r["traced_growth_mb"] < 2 * r["frame_mb"], r  # a frame or two in flight at most, not one per segment
