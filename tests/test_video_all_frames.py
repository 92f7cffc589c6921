"""The report's frame-based baseline classifies every frame of a video (not the 9 sampled ones) and
aggregates per video by mean, max or median; and Video Swin's frame stack reads T frames per video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgesewer.data.video import VideoLabels  # noqa: E402
from edgesewer.data.video_torch import ClipFramesDataset  # noqa: E402
from edgesewer.train.video import predict_all_frames  # noqa: E402
from test_runtime_support import RED, colour_plan, write_video  # noqa: E402

N_FRAMES = 20
P_RED, P_GREY = 1 / (1 + np.exp(-(10 * 230 / 255 - 5))), 1 / (1 + np.exp(5))  # RED is BGR (0, 0, 230)


class RedScore(torch.nn.Module):
    """Logit = 10 (mean R - mean G) - 5 on pixels / 255: red frames about +5, grey ones -5."""

    def forward(self, x):
        means = x.mean(dim=(2, 3))
        logit = 10 * (means[:, 0] - means[:, 1]) - 5
        return torch.stack([logit, -logit], 1)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> VideoLabels:
    folder = tmp_path_factory.mktemp("frames")
    write_video(folder / "v.avi", colour_plan(N_FRAMES, {(0, 4): RED}), fps=10.0)  # 5 red, 15 grey frames
    return VideoLabels(["v.avi"], np.array([[1, 0]], np.uint8), ("RB", "ZC"), folder / "labels.json", Path(folder))


@pytest.mark.parametrize("how", ["mean", "max", "median"])
def test_all_frames_are_classified_and_aggregated(video, how):
    scores = predict_all_frames(RedScore(), video, 8, (0.0,) * 3, (1.0,) * 3, torch.device("cpu"), how, batch=6)
    expected = {"mean": (5 * P_RED + 15 * P_GREY) / 20, "max": P_RED, "median": P_GREY}[how]  # 5 red of all 20
    assert scores.shape == (1, 2)
    assert scores[0, 0] == pytest.approx(expected, abs=0.01)


def test_frame_step_takes_every_kth_frame(video):
    scores = predict_all_frames(RedScore(), video, 8, (0.0,) * 3, (1.0,) * 3, torch.device("cpu"), "mean", step=4)
    assert scores[0, 0] == pytest.approx((2 * P_RED + 3 * P_GREY) / 5, abs=0.01)  # 0, 4 red of 0, 4, 8, 12, 16


def test_frame_stack_dataset_reads_t_frames(video):
    x, y = ClipFramesDataset(video, 8, (0.0,) * 3, (1.0,) * 3, frames=16)[0]
    assert tuple(x.shape) == (16, 3, 8, 8) and y.tolist() == [1.0, 0.0]


def test_video_swin_recipe_builds_a_frame_stack_run(video):
    """`edgesewer video train --model video-swin3d-b`: T-frame stacks from the whole video, checkpointing on."""
    from edgesewer.train.video import build_datasets, build_video_model, load_video_recipe

    recipe, section = load_video_recipe(model="video-swin3d-b", overrides=["model.pretrained=false", "video.frames=4",
                                                                           "video.tile=32"])
    with torch.device("meta"):
        model, cfg, arch_kw, tile = build_video_model(recipe, section, video.classes)
    assert model.grad_checkpointing and cfg.extra["video_kind"] == "clip" and cfg.input_shape == (4, 3, 32, 32)
    assert arch_kw == {"classes": ["RB", "ZC"], "img_size": 32, "frames": 4, "drop_path_rate": 0.2} and tile == 32
    train_set, val_set = build_datasets(video, video, section, cfg, tile)
    assert tuple(val_set[0][0].shape) == tuple(train_set[0][0].shape) == (4, 3, 32, 32)


def test_report_superimage_recipe_builds_with_checkpointing():
    from edgesewer.train.video import build_video_model, load_video_recipe

    recipe, section = load_video_recipe(model="superimage-tresnet-xl", overrides=["model.pretrained=false"])
    with torch.device("meta"):
        model, cfg, _, tile = build_video_model(recipe, section, ("RB", "ZC"))
    assert model.grad_checkpointing and cfg.input_size == 1344 and tile == 448
    assert cfg.extra["head"] == "ml_decoder" and cfg.extra["video_kind"] == "superimage"
