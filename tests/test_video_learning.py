"""On synthetic inspection clips the super-image model learns clip labels clearly better than a constant.

The VideoPipe recipe starts from ImageNet weights, which tests cannot download; a ResNet-18 frame
classifier trained for a few CPU minutes on the synthetic stills stands in for them. The clips come
from held-out videos (another generator seed), so no clip of the evaluation shares a pipe with training.
Also prints the frame-averaging numbers of the same frame classifier for comparison.
"""

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from edgesewer.data.sewerml import load_split  # noqa: E402
from edgesewer.data.synth import generate  # noqa: E402
from edgesewer.data.torch_dataset import SewerMLDataset  # noqa: E402
from edgesewer.data.video import cut_inspection_clips  # noqa: E402
from edgesewer.data.video_torch import ClipFramesDataset  # noqa: E402
from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, ModelCfg  # noqa: E402
from edgesewer.train.classify import SewerMLEvaluator  # noqa: E402
from edgesewer.train.engine import Trainer, TrainConfig  # noqa: E402
from edgesewer.train.video import load_video_recipe, predict_videos, train_video, video_metrics  # noqa: E402

TILE = 48  # 160x128 frames shrink 3.3x, like the 96 px stills of the frame-level learnability test
SIZE = (160, 128)
# Fixed amounts of training (not time budgets), so the outcome does not depend on the machine's speed.
STILLS, FRAME_EPOCHS = 2000, 8
TRAIN_VIDEOS, VAL_VIDEOS, CLIP_EPOCHS = 40, 12, 5


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: no gain from threads, and no oversubscription
    yield
    torch.set_num_threads(before)


def _frame_classifier(root, out):
    """ResNet-18 on the synthetic stills at the tile size: the stand-in for ImageNet weights."""
    generate(root, images=STILLS, videos=0, crack_images=0, size=SIZE, workers=2, progress=False)
    rng = np.random.default_rng(0)
    flip = lambda im: im[:, ::-1] if rng.random() < 0.5 else im  # noqa: E731
    train = SewerMLDataset(load_split(root / "sewerml", "Train"), TILE, IMAGENET_MEAN, IMAGENET_STD, augment=flip)
    val = SewerMLDataset(load_split(root / "sewerml", "Val"), TILE, IMAGENET_MEAN, IMAGENET_STD)
    cfg = ModelCfg(name="timm:resnet18", task="classify", input_size=TILE, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    run = TrainConfig(epochs=FRAME_EPOCHS, batch_size=32, amp=False, monitor="mAP", num_workers=0, out_dir=out,
                      device="cpu", progress=False)
    trainer = Trainer(timm.create_model("resnet18", num_classes=17), train, val, loss_fn=torch.nn.BCEWithLogitsLoss(),
                      optimizer_factory=lambda m: torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=1e-4),
                      scheduler_factory=None, evaluate_fn=SewerMLEvaluator(), cfg=run, model_cfg=cfg)
    return trainer.fit(), out / "best.pt"


@pytest.mark.slow
def test_superimage_learns_clip_labels(tmp_path):
    start = time.monotonic()
    torch.manual_seed(0)  # the frame classifier's initial weights: without it the run is not repeatable
    stills, frame_ckpt = _frame_classifier(tmp_path / "stills", tmp_path / "frame")
    common = dict(images=0, crack_images=0, size=SIZE, fps=10, workers=2, progress=False)  # same bytes as 1 worker
    generate(tmp_path / "videos_train", videos=TRAIN_VIDEOS, seed=0, **common)
    generate(tmp_path / "videos_val", videos=VAL_VIDEOS, seed=1, **common)
    train = cut_inspection_clips(tmp_path / "videos_train", tmp_path / "clips_train", stride_s=1.0, progress=False)
    val = cut_inspection_clips(tmp_path / "videos_val", tmp_path / "clips_val", seed=1, progress=False)

    overrides = [f"video.tile={TILE}", "video.classes=sewerml", f"train.epochs={CLIP_EPOCHS}",
                 "train.batch_size=16", "train.accum_steps=1", "train.ema_decay=null", "train.device=cpu",
                 "train.amp=false", "data.num_workers=0", "model.pretrained=false", "model.drop_path_rate=0",
                 "optim.lr=5e-4", "optim.schedule=constant", "train.early_stop=null", f"model.backbone_ckpt={frame_ckpt}"]
    recipe, video = load_video_recipe(model="superimage-resnet18", overrides=overrides)
    result = train_video(recipe, video, train, val, out=tmp_path / "superimage")
    curve = [json.loads(line)["val/mAP"] for line in open(tmp_path / "superimage" / "results.jsonl")]

    constant = video_metrics(np.tile(train.targets.mean(0), (len(val), 1)), val.targets, val.classes)["mAP"]
    frame_model = timm.create_model("resnet18", num_classes=17)
    frame_model.load_state_dict(torch.load(frame_ckpt, map_location="cpu", weights_only=False)["model"])
    loader = torch.utils.data.DataLoader(ClipFramesDataset(val, TILE, IMAGENET_MEAN, IMAGENET_STD), batch_size=8)
    frames = {agg: video_metrics(*predict_videos(frame_model, loader, torch.device("cpu"), agg), val.classes)["mAP"]
              for agg in ("mean", "max", "median")}
    print(f"\n{len(train)} train / {len(val)} held-out clips; stills mAP {stills['mAP']:.3f}; "
          f"clip mAP: constant {constant:.3f}, super-image last {curve[-1]:.3f} (best {max(curve):.3f}, "
          f"{len(curve)} epochs), frame mean {frames['mean']:.3f} max {frames['max']:.3f} "
          f"median {frames['median']:.3f}; {(time.monotonic() - start) / 60:.1f} min")
    # The last two epochs, not the best one: picking the best on the evaluation clips would flatter it.
    # Bounds from two runs here (last epoch 0.278 and 0.232 against constants 0.156): the curve moves by
    # a few points from run to run, so the margin is set below both. The bound needs the clip training: seeded,
    # lr 5e-4 ends at 0.252 (passes) and lr 0 at 0.196 (fails; the frame head alone, copied onto the pooled
    # tiles). Smaller settings that would save minutes (32-px tiles, 20-30 videos, 2-5 epochs) did not learn:
    # their lr-0 runs scored as well as or better than the trained ones, so this test keeps its size.
    late = max(curve[-2:])
    assert late > constant + 0.05
    assert late > 1.3 * constant
    assert result.val_scores.shape == (len(val), 17)
