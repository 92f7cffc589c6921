"""Synthetic sewer CCTV data: the embedded default data set for demos and tests.

`generate(out, ...)` writes a Sewer-ML-format image set, DeepCrack-style crack patches and
inspection videos with per-frame ground truth (layout in `writer.py`); `render_frame(codes)`
renders one frame with the given defects for runtime and benchmark tests.

How it works: the pipe wall is a texture strip (angle round the pipe x distance along it) on
which defects are painted; each frame is a perspective remap of that strip through the ray
geometry of a camera inside the pipe, lit by the crawler's lamp, with water, deposits and 3-D
objects (roots, sealing rings, obstacles) added, then blur, noise and a CCTV text overlay.

Speed at 320x256 on the 2-core CI machine (measured as CPU time, because other jobs shared the
machine; wall-clock under that load was 18-21 images/s): ~20 ms per image including PNG writing,
i.e. ~50 images/s in one process and ~95 images/s with `workers=2` (per-image seeds, so the bytes
do not depend on the worker count); video frames ~14 ms each including mp4 encoding. The default
`edgesewer data synth` (2000 images, 200 crack patches, 2 x 20 s videos) is ~40 s on two idle cores.
"""

from edgesewer.data.synth.scene import Frame
from edgesewer.data.synth.still import render_frame, render_sample
from edgesewer.data.synth.writer import SynthSummary, default_synthetic_dir, generate

__all__ = ["Frame", "SynthSummary", "default_synthetic_dir", "generate", "parse_size", "render_frame", "render_sample"]


def parse_size(text: str) -> tuple[int, int]:
    """'320x256' -> (320, 256); raises DataError with one line on anything else."""
    from edgesewer.errors import DataError

    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise DataError(f"bad size {text!r}: expected WIDTHxHEIGHT, e.g. 320x256")
    width, height = int(parts[0]), int(parts[1])
    if not (32 <= width <= 4096 and 32 <= height <= 4096):
        raise DataError(f"bad size {text!r}: width and height must be 32..4096")
    return width, height
