"""OCR distance on synthetic inspection videos against the generator's per-frame truth.

    python benchmarks/distance_ocr.py                    # 20 videos (seeds 0..19), 4 s each at 25 fps, 320 x 256
    python benchmarks/distance_ocr.py --videos 4 --every 1

For each video the counter is read the way `edgesewer run --distance ocr` reads it (`OcrDistance`:
every `--every`-th frame, every frame until the first track; then the monotone smoother), and each
frame's estimate is compared with the distance the generator drew on it (`distance_m` in the video's
JSON). Printed: per video and overall, the share of frames within 0.05 m, the share with no estimate
yet, the share of single Tesseract reads within 0.05 m, and milliseconds per Tesseract call.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesewer.data.synth.video import render_video  # noqa: E402
from edgesewer.runtime.distance import OcrDistance  # noqa: E402

TOLERANCE_M = 0.05


def measure(video: Path, every: int) -> dict:
    truth = json.loads(video.with_suffix(".json").read_text())
    reader = OcrDistance(every=every)
    reads_ok = reads = 0
    original = reader.ocr.read

    def read_and_score(image, _truth=truth):  # score each single read too, against its own frame
        nonlocal reads_ok, reads
        value = original(image)
        reads += 1
        reads_ok += value is not None and abs(value - _truth["distance_m"][frame]) <= TOLERANCE_M + 1e-9
        return value

    reader.ocr.read = read_and_score
    cap = cv2.VideoCapture(str(video))
    within = unknown = 0
    for frame in range(truth["n_frames"]):
        ok, image = cap.read()
        if not ok:
            raise SystemExit(f"{video}: frame {frame} unreadable")
        estimate = reader.at(frame / truth["fps"], image)
        unknown += estimate is None
        within += estimate is not None and abs(estimate - truth["distance_m"][frame]) <= TOLERANCE_M + 1e-9
    cap.release()
    return {"frames": truth["n_frames"], "within": within, "unknown": unknown, "reads": reads,
            "reads_ok": reads_ok, "calls": reader.ocr.calls, "seconds": reader.ocr.seconds,
            "top": truth["overlay_top"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--out", type=Path, help="keep the rendered videos here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in range(args.videos):
            video = out / f"inspection_{seed:03d}.mp4"
            if not video.exists():
                render_video(out, video.stem, seed=seed, seconds=args.seconds)
            row = measure(video, args.every)
            rows.append(row)
            print(f"seed {seed:2d} ({'top   ' if row['top'] else 'bottom'}): {row['within'] / row['frames']:.2f} "
                  f"of frames within {TOLERANCE_M} m, {row['unknown'] / row['frames']:.2f} unknown, "
                  f"single reads {row['reads_ok']}/{row['reads']}", flush=True)
    keys = ("frames", "within", "unknown", "reads", "reads_ok", "calls", "seconds")
    total = {k: sum(r[k] for r in rows) for k in keys}
    print(f"\n{args.videos} videos, {total['frames']} frames, OCR every {args.every} frames, {platform.machine()}:")
    print(f"  frames within {TOLERANCE_M} m of the drawn counter: {total['within'] / total['frames']:.3f}")
    print(f"  frames with no estimate yet:                  {total['unknown'] / total['frames']:.3f}")
    print(f"  single reads within {TOLERANCE_M} m:                   {total['reads_ok'] / total['reads']:.3f} "
          f"({total['reads']} reads)")
    print(f"  Tesseract: {1000 * total['seconds'] / total['calls']:.1f} ms per call, {total['calls']} calls")


if __name__ == "__main__":
    main()
