"""`edgesewer video ensemble --recipe train/videopipe-ensemble.yaml runs/*/oof_results.json`: the yaml's weights.

Hand-made results files, one per member of the report's ensemble (six models; Video Swin-B fixed at
0.1, the five image models sharing 0.9), matched to their members by model name: the folder name, or
the fold runs that `edgesewer video folds-train` writes next to its oof_results.json. The blend is
checked against numbers computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgesewer.cli.video import app
from edgesewer.errors import DataError
from edgesewer.train.ensemble_recipe import load_ensemble_recipe, match_members
from edgesewer.train.recipe import recipes_dir

RECIPE = recipes_dir() / "videopipe-ensemble.yaml"
IMAGE_MODELS = ("superimage-tresnet-xl", "superimage-convnext-base-384", "superimage-nfnet-f3", "superimage-nfnet-f6",
                "superimage-efficientnet-l2")
# Each member scores every class of video a.mp4 with one value and of b.mp4 with 1 - that value.
VALUES = {**dict(zip(IMAGE_MODELS, (0.1, 0.2, 0.3, 0.4, 0.5))), "video-swin3d-b": 0.9}
runner = CliRunner()


def results_file(path: Path, value: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"a.mp4": [value] * 17, "b.mp4": [round(1 - value, 6)] * 17}))
    return path


def fold_runs(folder: Path, model: str, folds: int = 2) -> None:
    """What `folds-train` leaves next to oof_results.json: fold<k>/recipe.yaml (and video.json)."""
    for k in range(folds):
        (folder / f"fold{k}").mkdir(parents=True, exist_ok=True)
        (folder / f"fold{k}" / "recipe.yaml").write_text(f"# resolved\nmodel:\n  name: {model}\n  img_size: 64\n")
        (folder / f"fold{k}" / "video.json").write_text(json.dumps({"frame_model": None, "folds": folds}))


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    """runs/<model>/oof_results.json for the image models; Video Swin-B's in a folder named otherwise, with folds."""
    paths = {m: results_file(tmp_path / "runs" / m / "oof_results.json", v) for m, v in VALUES.items()
             if m != "video-swin3d-b"}
    swin = tmp_path / "runs" / "swin-32x224-try2"
    fold_runs(swin, "video-swin3d-b")
    paths["video-swin3d-b"] = results_file(swin / "oof_results.json", VALUES["video-swin3d-b"])
    return paths


def invoke(*args: str):
    result = runner.invoke(app, ["ensemble", *map(str, args)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result, lines


def test_recipe_weights_are_applied_by_model_name(runs, tmp_path):
    out = tmp_path / "ens.json"
    shuffled = [runs[m] for m in ("video-swin3d-b", *reversed(IMAGE_MODELS))]  # not the recipe's order
    result, lines = invoke("--recipe", RECIPE, *shuffled, "--out", out)
    assert result.exit_code == 0, result.output
    # Swin 0.1; the five image models share 0.9 equally: 0.18 each.
    assert lines[0] == ("weights superimage-tresnet-xl 0.180, superimage-convnext-base-384 0.180, "
                        "superimage-nfnet-f3 0.180, superimage-nfnet-f6 0.180, superimage-efficientnet-l2 0.180, "
                        "video-swin3d-b 0.100")
    blended = json.loads(out.read_text())
    # a: 0.18 (0.1 + 0.2 + 0.3 + 0.4 + 0.5) + 0.1 x 0.9 = 0.27 + 0.09; b: 0.18 (0.9 + 0.8 + 0.7 + 0.6 + 0.5) + 0.1 x 0.1
    assert blended["a.mp4"] == pytest.approx([0.36] * 17)
    assert blended["b.mp4"] == pytest.approx([0.64] * 17)
    assert "--normal-threshold 0.9" in lines[-1] and "lb_mAP_post 72.181" in lines[-1]
    # The shipped recipe by its bare name gives the same blend.
    result, _ = invoke("--recipe", "videopipe-ensemble", *shuffled, "--out", tmp_path / "ens2.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ens2.json").read_text()) == blended


def test_recipe_errors_name_the_file(runs, tmp_path):
    out = tmp_path / "ens.json"
    members = list(runs.values())
    # A member without a results file.
    result, lines = invoke("--recipe", RECIPE, *members[:-1], "--out", out)
    assert result.exit_code == 1 and len(lines) == 1
    assert lines[0] == f"error: {RECIPE}: no results file for member video-swin3d-b among the 5 given"
    # A results file of a model that is not a member (its fold runs say which).
    other = tmp_path / "runs" / "frames-baseline"
    fold_runs(other, "superimage-resnet18")
    stray = results_file(other / "oof_results.json", 0.5)
    result, lines = invoke("--recipe", RECIPE, *members, stray, "--out", out)
    assert result.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {stray}: scores superimage-resnet18, which is not a member of {RECIPE}")
    # A results file nothing identifies.
    loose = results_file(tmp_path / "misc" / "scores.json", 0.5)
    result, lines = invoke("--recipe", RECIPE, *members, loose, "--out", out)
    assert result.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {loose}: cannot tell which model it scores")
    # Two files for one member.
    twice = results_file(tmp_path / "copy" / "superimage-nfnet-f3.json", 0.3)
    result, lines = invoke("--recipe", RECIPE, *members, twice, "--out", out)
    assert result.exit_code == 1 and len(lines) == 1
    assert lines[0] == (f"error: {twice}: a second results file for superimage-nfnet-f3 "
                        f"(the first is {runs['superimage-nfnet-f3']})")
    # The recipe sets the weights: --fixed / --weights next to it are refused.
    result, lines = invoke("--recipe", RECIPE, *members, "--fixed", "6=0.2", "--out", out)
    assert result.exit_code == 1 and lines == [f"error: --recipe {RECIPE} sets the weights: drop --fixed"]
    assert not out.exists()


def test_recipe_with_fitted_shares(tmp_path):
    """--fit-gt fits the null members' shares of what the fixed ones leave (grid step 0.5 here)."""
    recipe = tmp_path / "three.yaml"
    recipe.write_text("members:\n  good: null\n  noise: null\n  swin: 0.1\nnormal_threshold: 0.9\n")
    rng = np.random.default_rng(0)
    names = [f"v{i:02d}.mp4" for i in range(30)]
    targets = (rng.random((30, 17)) < 0.3).astype(int)
    targets[:, 0] = 0  # no normal videos: the blend is scored on the defect classes only
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({n: [int(k) for k in np.flatnonzero(row)] for n, row in zip(names, targets)}))
    scores = {"good": targets * 0.8 + rng.random((30, 17)) * 0.1, "noise": rng.random((30, 17)),
              "swin": rng.random((30, 17))}
    paths = []
    for model, s in scores.items():
        path = tmp_path / model / "oof_results.json"
        path.parent.mkdir()
        path.write_text(json.dumps({n: [float(v) for v in row] for n, row in zip(names, s)}))
        paths.append(path)
    result, lines = invoke("--recipe", recipe, *reversed(paths), "--fit-gt", gt, "--step", "0.5",
                           "--out", tmp_path / "ens.json")
    assert result.exit_code == 0, result.output
    assert lines[0].startswith("fitted weights 0.90, 0.00, 0.10: mAP")
    assert lines[1] == "weights good 0.900, noise 0.000, swin 0.100"


def test_recipe_loader_checks_the_weights(tmp_path):
    spec = load_ensemble_recipe(RECIPE)
    assert spec.fixed == {"video-swin3d-b": 0.1} and spec.normal_threshold == 0.9
    assert list(spec.members) == [*IMAGE_MODELS, "video-swin3d-b"] and spec.targets == {"lb_mAP_post": 72.181}
    bad = tmp_path / "bad.yaml"
    for text, message in (("members: []\n", "needs `members:`"),
                          ("members:\n  a: 1.5\n  b: null\n", r"member a: weight 1.5 is not a number in \[0, 1\]"),
                          ("members:\n  a: 0.6\n  b: 0.6\n  c: null\n", "fixed member weights sum to 1.2"),
                          ("members:\n  a: 0.3\n  b: 0.3\n", r"exactly 1 when no member is null")):
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            load_ensemble_recipe(bad)
    # Matching alone: the folder name, the file name, or the fold runs, in the recipe's order.
    two = tmp_path / "two.yaml"
    two.write_text("members:\n  m-a: 0.5\n  m-b: 0.5\n")
    a = results_file(tmp_path / "x" / "m-a" / "oof_results.json", 0.1)
    b = results_file(tmp_path / "y" / "m-b.json", 0.2)
    assert match_members(load_ensemble_recipe(two), [b, a]) == [("m-a", a), ("m-b", b)]
