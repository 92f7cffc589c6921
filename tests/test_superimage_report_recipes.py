"""The VideoPipe report's recipes: one per model, the report's settings, its table's targets; the ensemble.

No network is built here (the meta device at most): this is about the YAML files and their loaders.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from edgesewer.errors import DataError
from edgesewer.train.recipe import recipe_from_dict, recipes_dir
from edgesewer.train.video_folds import fit_ensemble_weights, with_fixed_weights

torch = pytest.importorskip("torch")

from edgesewer.models.superimage import (REPORT_ENSEMBLE_LB_MAP, REPORT_MODELS, REPORT_SWIN_WEIGHT,  # noqa: E402
                                         REPORT_TARGETS)
from edgesewer.models.videoswin import ENSEMBLE_WEIGHT  # noqa: E402
from edgesewer.train.video import load_video_recipe  # noqa: E402

# The report's results table (CV mAP / leaderboard mAP), typed in again here on purpose.
PAPER = {"superimage-tresnet-xl": (67.19, 68.299), "superimage-convnext-base-384": (69.89, 70.287),
         "superimage-nfnet-f3": (71.41, 71.109), "superimage-nfnet-f6": (70.45, 70.769),
         "superimage-efficientnet-l2": (70.95, 70.853)}


@pytest.mark.parametrize("name", REPORT_MODELS)
def test_each_report_model_has_its_recipe_with_the_reports_settings(name):
    recipe, video = load_video_recipe(model=name)  # train/<name>.yaml is picked for its model
    assert recipe.source.endswith(f"{name}.yaml") and recipe.model.name == name
    size = 1152 if name.endswith("f6") else 1344
    assert recipe.model.img_size == size
    assert recipe.model.grad_checkpointing and recipe.train.amp and recipe.train.ema_decay
    assert recipe.train.accum_steps > 1 and recipe.train.epochs == 30
    assert (recipe.optim.name, recipe.optim.schedule) == ("adamw", "onecycle")
    assert video.targets == {"cv_mAP": PAPER[name][0], "lb_mAP": PAPER[name][1], "ensemble_lb_mAP": 72.181}
    assert REPORT_TARGETS[name] == {"cv_mAP": PAPER[name][0], "lb_mAP": PAPER[name][1]}
    text = (recipes_dir() / f"{name}.yaml").read_text()
    assert f"CV mAP {PAPER[name][0]}, leaderboard mAP {PAPER[name][1]}" in text  # header comment


def test_video_swin_recipe_and_ensemble_weight():
    recipe, video = load_video_recipe(model="video-swin3d-b")
    assert recipe.model.name == "video-swin3d-b" and recipe.model.grad_checkpointing
    assert video.targets == {"mAP": 64.8, "mAP_ema": 68.251} and recipe.train.ema_decay
    assert video.ensemble_weight == ENSEMBLE_WEIGHT == REPORT_SWIN_WEIGHT == 0.1
    ensemble = yaml.safe_load((recipes_dir() / "videopipe-ensemble.yaml").read_text())
    assert ensemble["members"] == {**{n: None for n in REPORT_MODELS}, "video-swin3d-b": 0.1}
    assert ensemble["targets"]["lb_mAP_post"] == REPORT_ENSEMBLE_LB_MAP == 72.181


def test_frame_baseline_recipe_classifies_all_frames():
    recipe, video = load_video_recipe(recipes_dir() / "superimage-frames.yaml")
    assert video.frame_model and video.eval_frames == "all" and video.aggregate == "mean"
    assert video.targets == {"mAP": 54.71}
    with pytest.raises(DataError, match="eval_frames must be sampled or all"):
        load_video_recipe(recipes_dir() / "superimage-frames.yaml", overrides=["video.eval_frames=some"])
    with pytest.raises(DataError, match="is for the frame-based route"):
        load_video_recipe(overrides=["video.eval_frames=all"])


def test_grad_checkpointing_is_a_model_setting():
    recipe = recipe_from_dict({"model": {"name": "vit-t", "grad_checkpointing": True}})
    assert recipe.model.grad_checkpointing is True
    assert recipe_from_dict({}).model.grad_checkpointing is False
    with pytest.raises(DataError, match="model.grad_checkpointing: expected true or false"):
        recipe_from_dict({"model": {"grad_checkpointing": "yes"}})


def test_fixed_weights_keep_swin_at_a_tenth():
    assert np.allclose(with_fixed_weights(6, {5: 0.1}), [0.18] * 5 + [0.1])
    with pytest.raises(DataError, match="do not fit"):
        with_fixed_weights(2, {0: 1.5})
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 3)) < 0.4).astype(float)
    good = targets * 0.8 + rng.random((40, 3)) * 0.2
    noise = [rng.random((40, 3)) for _ in range(2)]
    w, _ = fit_ensemble_weights([noise[0], good, noise[1]], targets, step=0.1, fixed={2: 0.1})
    assert w[2] == pytest.approx(0.1) and w.sum() == pytest.approx(1.0) and w[1] == pytest.approx(0.9)


def test_ensemble_cli_fixes_swin_at_a_tenth(tmp_path):
    from typer.testing import CliRunner

    from edgesewer.cli.video import app
    from edgesewer.data.video import read_results, write_results

    names = ["a.mp4", "b.mp4"]
    paths = []
    for i, value in enumerate((0.2, 0.4, 0.9)):
        paths.append(write_results(tmp_path / f"m{i}.json", names, np.full((2, 17), value)))
    out = tmp_path / "ens.json"
    result = CliRunner().invoke(app, ["ensemble", *map(str, paths), "--fixed", "3=0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "weights 0.450, 0.450, 0.100" in result.output
    assert read_results(out)["a.mp4"][0] == pytest.approx(0.45 * 0.2 + 0.45 * 0.4 + 0.1 * 0.9)
    bad = CliRunner().invoke(app, ["ensemble", *map(str, paths), "--fixed", "3=x", "--out", str(out)])
    assert bad.exit_code != 0 and "expected N=W" in bad.output
