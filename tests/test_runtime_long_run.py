"""Memory stays flat on a long run: closed segments keep an encoded snapshot, not their peak frame
(`benchmarks/long_run_memory.py` at a smaller count)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from long_run_memory import long_run  # noqa: E402


def test_rss_stays_flat_over_many_segments(tmp_path):
    # 300 frames of 1280x720 with a defect every 20 frames: 15 segments with a snapshot each. Holding
    # each segment's peak frame would add 12 x 2.6 MiB = 32 MiB between the sample at frame 60 and the end.
    r = long_run(frames=300, width=1280, height=720, warmup=60, workdir=tmp_path)
    assert (r["frames"], r["segments"], r["snapshots"]) == (300, 15, 15)
    assert r["growth_mb"] < 5 * r["frame_mb"], r  # a few frames in flight at most, not one per segment
