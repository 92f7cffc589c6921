"""Can a frame classifier trained on video frames find the defect segments of an unseen inspection video?

    edgesewer data synth --out V --images 0 --videos 200 --crack-images 0 --seed 12
    edgesewer video frames --data V --out F --stride 4 --val-videos 8
    python benchmarks/frame_segments.py --data F --arch timm:resnet10t --size 96 --steps 3000
    python benchmarks/frame_segments.py --data F --arch vit-t --size 64 --steps 6000 --lr 3e-4

Trains with a bare loop on frames decoded once (CIW-weighted BCE, h-flip, one-cycle lr, one thread),
then every `--every` steps prints val mAP / F2_CIW and the segment score on the test video (the default
synthetic set's inspection_000, seed 0, which seed 12's videos do not include): per-frame scores go
through the runtime's own smoothing (k-of-n 3/5) and segment tracker with the e2e test's settings, and are
matched to the ground-truth segments at temporal IoU >= 0.3, as tests/test_runtime_e2e.py scores them.
This measures what the CPU can learn, not the training pipeline (`edgesewer train` is that).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without install

from edgesewer.data.images import read_image  # noqa: E402
from edgesewer.data.preprocess import preprocess  # noqa: E402
from edgesewer.data.sewerml import load_split  # noqa: E402
from edgesewer.data.video import probe_video, read_frames  # noqa: E402
from edgesewer.metrics.sewerml import evaluate_sewerml  # noqa: E402
from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD  # noqa: E402
from edgesewer.models.losses import ciw_pos_weight  # noqa: E402
from edgesewer.runtime.postprocess import FrameResult, TemporalSmoother, parse_smoothing  # noqa: E402
from edgesewer.runtime.segments import SegmentTracker, load_truth_segments, score_segments  # noqa: E402
from edgesewer.taxonomy import SEWER_CODES  # noqa: E402
from edgesewer.train.video import build_frame_model  # noqa: E402


def segment_score(probs: np.ndarray, truth: Path, threshold: float, fps: float = 25.0):
    """The runtime's decisions and segments with the e2e test's settings (0.5 s merge gap, 0.4 s minimum)."""
    smoother = TemporalSmoother(parse_smoothing("kofn:3/5"), np.full(len(SEWER_CODES), threshold, np.float32))
    tracker = SegmentTracker(max_gap=round(0.5 * fps), min_frames=max(1, round(0.4 * fps)))
    for i, p in enumerate(probs):
        scores, active = smoother.update(p)
        tracker.update(FrameResult(index=i, time=i / fps, image=None, classes=SEWER_CODES, scores=scores,
                                   active=active))
    return score_segments(tracker.finish(), load_truth_segments(truth), iou_threshold=0.3)


def decode(images: list[np.ndarray], size: int, interpolation: str) -> torch.Tensor:
    chunks = [preprocess(images[i:i + 256], size, SEWERML_MEAN, SEWERML_STD, interpolation)
              for i in range(0, len(images), 256)]
    return torch.from_numpy(np.concatenate(chunks)).half()  # half: 24k frames at 96 px in 1.3 GB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="output of `edgesewer video frames`")
    ap.add_argument("--video", type=Path, help="test video (default: the shared synthetic set's inspection_000.mp4)")
    ap.add_argument("--arch", default="timm:resnet10t", help="a zoo classifier (vit-t) or timm:<arch>")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--every", type=int, default=750)
    ap.add_argument("--interpolation", default=None, help="default: the zoo model's, else bilinear")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # CPU time = wall time, comparable across runs

    if args.video is None:
        from edgesewer.data.synth.writer import default_synthetic_dir

        args.video = default_synthetic_dir() / "videos" / "inspection_000.mp4"
    model = build_frame_model(args.arch, SEWER_CODES, args.size)
    interpolation = args.interpolation or getattr(getattr(model, "cfg", None), "interpolation", "bilinear")
    train, val = load_split(args.data, "Train"), load_split(args.data, "Val")
    t0 = time.monotonic()
    xs = decode([read_image(train.image_path(i)) for i in range(len(train))], args.size, interpolation)
    xv = decode([read_image(val.image_path(i)) for i in range(len(val))], args.size, interpolation)
    xt = decode(read_frames(args.video, range(probe_video(args.video).n_frames), seek_gap=None), args.size,
                interpolation)
    ys, yv = torch.from_numpy(train.labels.astype(np.float32)), val.labels.astype(np.float32)
    print(f"{args.arch} at {args.size} px: {len(xs)} train / {len(xv)} val frames, test video {len(xt)} frames "
          f"(decoded in {time.monotonic() - t0:.0f} s)", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(ciw_pos_weight(), dtype=torch.float32))

    def predict(x: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = torch.cat([torch.sigmoid(model(x[i:i + 128].float())) for i in range(0, len(x), 128)]).numpy()
        model.train()
        return out

    def report(step: int) -> None:
        metrics = evaluate_sewerml(predict(xv), yv)
        test = predict(xt)
        cells = [f"{step:>6} steps {time.monotonic() - t0:>5.0f} s", f"val mAP {metrics['mAP']:.3f}",
                 f"F2_CIW {metrics['F2_CIW']:.3f}"]
        for threshold in (0.5, 0.3):
            s = segment_score(test, args.video.with_suffix(".json"), threshold)
            cells.append(f"segments@{threshold}: {s.matched}/{s.truth} found, {s.predicted} predicted "
                         f"(P {s.precision:.2f} R {s.recall:.2f})")
        print(" | ".join(cells), flush=True)

    step, t0 = 0, time.monotonic()
    while step < args.steps:
        for idx in torch.randperm(len(xs)).split(args.batch):
            x = xs[idx].float()
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            loss = loss_fn(model(x), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                report(step)
            if step >= args.steps:
                break


if __name__ == "__main__":
    main()
