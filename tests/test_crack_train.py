"""SCNet training pieces: loss values by hand, the validation evaluator, the recipe, and learning end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import edgesewer.models.scnet  # noqa: F401  (registers scnet until edgesewer/models/__init__.py imports it)
from edgesewer.errors import DataError
from edgesewer.train.losses_seg import SCNetLoss, focal_loss_with_logits, soft_iou_loss
from edgesewer.train.recipe import load_recipe
from edgesewer.train.segment import CrackEvaluator, build_seg_loss, sgd_factory, store_ods_threshold, train_segmenter
from test_crack_data import make_deepcrack  # tests/ is on sys.path (pytest prepend import mode)

LN2 = math.log(2)


def test_focal_loss_hand_values():
    # logit 0: p_t = 1/2 -> (1/2)^2 * ln 2 for either class; logit ln 3 on a crack: p_t = 3/4 -> (1/4)^2 * ln(4/3)
    logits = torch.tensor([0.0, 0.0, math.log(3)])
    target = torch.tensor([1.0, 0.0, 1.0])
    expected = (0.25 * LN2 + 0.25 * LN2 + 0.0625 * math.log(4 / 3)) / 3
    assert focal_loss_with_logits(logits, target).item() == pytest.approx(expected, rel=1e-6)
    valid = torch.tensor([1.0, 0.0, 0.0])  # only the first pixel counts
    assert focal_loss_with_logits(logits, target, valid=valid).item() == pytest.approx(0.25 * LN2, rel=1e-6)
    # gamma 0 and alpha 1 is plain binary cross-entropy
    assert focal_loss_with_logits(logits, target, gamma=0.0).item() == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6)


def test_soft_iou_hand_value():
    prob = torch.tensor([[[[0.5, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    # I = 0.5, U = (0.5 + 1 - 0.5) + 0.5 = 1.5, smoothing 1 -> 1 - 1.5 / 2.5
    assert soft_iou_loss(prob, target).item() == pytest.approx(0.4)


def test_scnet_loss_weights_the_side_outputs():
    target = torch.ones(1, 1, 2, 2)
    zeros = torch.zeros(1, 1, 2, 2)
    outputs = {"fused": zeros, "sides": (zeros,) * 5}
    # focal 0.25 ln 2 on the fused map and on each side (weights sum to 3.5); Soft-IoU 1 - (2 + 1) / (4 + 1)
    expected = (1 + 3.5) * 0.25 * LN2 + 0.4
    assert SCNetLoss(focal_reduction="mean")(outputs, target).item() == pytest.approx(expected, rel=1e-6)
    assert SCNetLoss(iou_weight=0.0, focal_reduction="mean")(outputs, target).item() == pytest.approx(4.5 * 0.25 * LN2, rel=1e-6)
    sides = (zeros, zeros, torch.full_like(zeros, 5.0), zeros, zeros)  # only side 3 (weight 1.0) changes
    change = SCNetLoss(focal_reduction="mean")({"fused": zeros, "sides": sides}, target) - SCNetLoss(focal_reduction="mean")(outputs, target)
    assert change.item() == pytest.approx(focal_loss_with_logits(torch.tensor(5.0), torch.tensor(1.0)).item()
                                          - 0.25 * LN2, rel=1e-5)
    padded = torch.full((1, 1, 2, 2), -1.0)
    padded[..., 0, 0] = 1.0  # one valid crack pixel, three ignored
    assert SCNetLoss(focal_reduction="mean")(outputs, padded).item() == pytest.approx(4.5 * 0.25 * LN2 + (1 - 1.5 / 2), rel=1e-6)


def test_focal_sum_is_the_papers_per_image_sum():
    """The default reduction sums the focal loss over each image's pixels (the paper's equations), mean over the batch."""
    logits = torch.zeros(2, 1, 4, 8)
    target = torch.zeros(2, 1, 4, 8)
    target[0, 0, 1] = 1.0
    per_pixel = 0.25 * LN2  # logit 0: the same for either class
    assert focal_loss_with_logits(logits, target, reduction="sum").item() == pytest.approx(32 * per_pixel, rel=1e-6)
    assert focal_loss_with_logits(logits, target, reduction="mean").item() == pytest.approx(per_pixel, rel=1e-6)
    valid = torch.ones_like(target)
    valid[1] = 0.0  # the second image is all padding: it adds nothing, the batch mean still divides by 2
    assert focal_loss_with_logits(logits, target, valid=valid, reduction="sum").item() == pytest.approx(16 * per_pixel)
    zeros = torch.zeros(1, 1, 2, 2)
    outputs, ones = {"fused": zeros, "sides": (zeros,) * 5}, torch.ones(1, 1, 2, 2)
    assert SCNetLoss()(outputs, ones).item() == pytest.approx(4 * 4.5 * per_pixel + 0.4, rel=1e-6)  # 4 pixels
    assert load_recipe("scnet", path="train/scnet.yaml").loss.focal_reduction == "sum"
    with pytest.raises(ValueError, match="focal reduction must be one of sum, mean"):
        SCNetLoss(focal_reduction="max")


class FixedProb(nn.Module):
    """Returns a fixed probability map (in eval mode), ignoring its input."""

    def __init__(self, prob: torch.Tensor) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prob.expand(x.shape[0], -1, -1, -1)


def test_evaluator_crops_padding_and_reports_ods():
    prob = torch.zeros(1, 1, 32, 32)
    prob[..., 0, :4] = 0.875  # four hits ...
    prob[..., 1, 0] = 0.625  # ... and one false alarm up to t = 0.62 (exact binary fractions)
    prob[..., 20:, :] = 0.95  # inside the padding: must be ignored
    target = torch.full((1, 1, 32, 32), -1.0)
    target[..., :20, :30] = 0.0
    target[..., 0, :5] = 1.0  # five crack pixels
    loader = [(torch.zeros(1, 4, 32, 32), target)]
    metrics = CrackEvaluator()(FixedProb(prob), loader, torch.device("cpu"))
    # t in [0.63, 0.87]: TP 4, FP 0, FN 1 -> F = 2 * 1 * 0.8 / 1.8
    assert metrics["ODS"] == pytest.approx(1.6 / 1.8)
    assert metrics["ODS_threshold"] == pytest.approx(0.63)
    assert metrics["IoU"] == pytest.approx(0.8)
    assert set(metrics) >= {"ODS", "OIS", "AUPRC", "IoU", "region_F1"}


def test_recipe_and_optimiser_follow_the_paper(tmp_path):
    recipe = load_recipe("scnet", path="train/scnet.yaml")
    optim = recipe.optim
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay, optim.schedule) == ("sgd", 1e-4, 0.9, 2e-4, "constant")
    assert recipe.train.batch_size == 4 and recipe.model.img_size == 256 and recipe.augment.rotation == 90
    assert recipe.train.monitor == "ODS"
    assert build_seg_loss(recipe).side_weights == (0.5, 0.75, 1.0, 0.75, 0.5)
    recipe.loss.name = "bce"
    with pytest.raises(DataError, match="loss.name must be scnet_focal_iou"):
        build_seg_loss(recipe)
    optimizer = sgd_factory()(nn.Conv2d(1, 1, 1))
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (1e-4, 0.9, 2e-4)
    assert store_ods_threshold(tmp_path, {"ODS_threshold": 0.3}) is None  # no best.pt: nothing to do


def test_recipes_select_on_validation_never_on_test():
    gpu, cpu = (load_recipe("scnet", path=f"train/{name}.yaml") for name in ("scnet", "scnet-cpu"))
    for recipe in (gpu, cpu):
        assert (recipe.data.train_split, recipe.data.val_split) == ("train", "val")
        assert recipe.model.kwargs["side_channels"] == 1 and recipe.train.monitor == "ODS"
    assert gpu.loss.focal_reduction == "sum" and gpu.optim.lr == 1e-4
    # the CPU recipe: the paper's 256-px crops one per step, and lr 0.01 with the mean (its header says why)
    assert (cpu.model.img_size, cpu.train.batch_size, cpu.data.repeats) == (256, 1, 1)
    assert (cpu.optim.lr, cpu.loss.focal_reduction, cpu.train.device) == (0.01, "mean", "cpu")
    assert build_seg_loss(cpu).reduction == "mean" and build_seg_loss(gpu).reduction == "sum"
    # the paper's [0, 90] degree rotation on the GPU; lossless quarter turns on the CPU (the header's measurement)
    assert (gpu.augment.rotation, gpu.augment.right_angles) == (90, False)
    assert (cpu.augment.rotation, cpu.augment.right_angles) == (0, True)


@pytest.mark.slow
def test_scnet_learns_cracks_through_the_engine(tmp_path):
    """A short run at 64-px crops must beat the all-crack baseline F = 2c/(1+c) (the all-background one is 0)."""
    torch.manual_seed(0)
    root = make_deepcrack(tmp_path / "dc", n_train=8, n_test=2)
    overrides = ["model.img_size=64", "train.epochs=4", "train.batch_size=4", "train.amp=false", "train.device=cpu",
                 "train.early_stop=null", "optim.lr=0.01", "data.num_workers=0", "train.log_every=1000",
                 "loss.focal_reduction=mean"]  # lr 0.01 is sized for the mean (train/scnet-cpu.yaml)
    recipe = load_recipe("scnet", path="train/scnet.yaml", overrides=overrides)
    recipe.data.repeats = 3  # 24 crops = 6 steps per epoch
    losses: list[float] = []
    result = train_segmenter(recipe, root, out=tmp_path / "run",
                             callbacks={"on_batch_end": [lambda trainer, loss: losses.append(loss)]})
    crack_fraction = 3 * 128 / (96 * 128)  # a 3-px line crossing 96 rows, roughly
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    # all-crack F is about 0.06 here; this run reaches about 0.94 (4 epochs of 6 steps)
    assert result.best_metrics["ODS"] > 5 * (2 * crack_fraction / (1 + crack_fraction))
    best = json.loads((result.run_dir / "best_metrics.json").read_text())
    assert best["thresholds"] == [pytest.approx(result.best_metrics["ODS_threshold"])]
    ckpt = torch.load(result.run_dir / "best.pt", weights_only=False)
    assert list(ckpt["model_cfg"]["thresholds"]) == [pytest.approx(result.best_metrics["ODS_threshold"])]
    assert ckpt["model_cfg"]["extra"]["edge"] == "canny" and ckpt["model_cfg"]["input_size"] == 64
