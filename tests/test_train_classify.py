"""The classification task: threshold tuning by hand, data subsets, and tiny end-to-end runs of
fine-tuning, linear probing, and DINO / hybrid pretraining -> fine-tuning (ViT-T at 32 px)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from edgesewer.errors import DataError, ModelNotFound  # noqa: E402
from edgesewer.metrics.sewerml import evaluate_sewerml  # noqa: E402
from edgesewer.modelcfg import SEWERML_MEAN  # noqa: E402
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER  # noqa: E402
from edgesewer.train.checkpoint import load_checkpoint  # noqa: E402
from edgesewer.train.classify import (THRESHOLD_GRID, build_model, evaluate_checkpoint, f2_per_class,  # noqa: E402
                                      freeze_backbone, load_classifier, load_splits, train_classifier,
                                      tune_thresholds, validation_record)
from edgesewer.train.recipe import load_recipe  # noqa: E402

TINY = ["model.img_size=32", "train.batch_size=8", "data.num_workers=0", "train.progress=false"]


def make_sewerml(root: Path, n_train=24, n_val=12, size=32, seed=0) -> Path:
    """A tiny Sewer-ML folder; class k draws a bright stripe at row block k (so it is learnable)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    index = 0
    for split, n in (("Train", n_train), ("Val", n_val)):
        lines = [",".join(SEWER_CSV_HEADER)]
        for _ in range(n):
            index += 1
            name = f"{index:08d}.png"
            labels = (rng.random(17) < 0.15).astype(int)
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            for k in np.flatnonzero(labels):
                row = int(k * size / 17)
                image[row:row + 2, :, k % 3] = 250
            cv2.imwrite(str(root / "images" / name), image)
            lines.append(",".join([name, "0", "0", *map(str, labels), "0", str(int(labels.any()))]))
        (root / f"SewerML_{split}.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def sewer(tmp_path_factory):
    return make_sewerml(tmp_path_factory.mktemp("sewerml"))


def test_threshold_tuning_on_a_hand_case():
    scores = np.full((4, 17), 0.1)
    targets = np.zeros((4, 17), dtype=np.uint8)
    scores[:, 0], targets[:, 0] = [0.9, 0.8, 0.3, 0.2], [1, 0, 1, 0]
    scores[:, 2], targets[:, 2] = [0.6, 0.6, 0.6, 0.6], [1, 1, 0, 0]
    scores[:, 5], targets[:, 5] = [0.9, 0.1, 0.1, 0.1], [0, 1, 0, 0]
    # class 0: t in (0.2, 0.3] predicts {0.9, 0.8, 0.3}: P 2/3, R 1, F2 = 10/11; t in (0.3, 0.8]: F2 0.5;
    #   t <= 0.2: P 1/2, R 1, F2 5/6. Best plateau 0.21..0.30, the value nearest 0.5 wins: 0.30.
    # class 2: any t <= 0.6 gives F2 5/6, above gives 0: the tie nearest 0.5 is 0.5 itself.
    # class 5: the positive scores 0.1 -> t in (0, 0.1] catches it with 4 predictions: P 1/4, R 1, F2 5/8;
    #   higher t: the one prediction (0.9) is wrong, F2 0. 5/8 is exactly what flagging every image scores
    #   at prevalence 1/4 (5p / (4p + 1)): the scores do not separate the class, so it keeps 0.5.
    # classes without positives keep 0.5.
    t = tune_thresholds(scores, targets)
    assert t[0] == pytest.approx(0.30) and t[2] == pytest.approx(0.5) and t[5] == pytest.approx(0.5)
    assert np.all(np.delete(t, [0, 2, 5]) == 0.5)
    f2 = f2_per_class(scores, targets, t)
    assert f2[0] == pytest.approx(10 / 11) and f2[2] == pytest.approx(5 / 6) and f2[5] == 0.0
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95


def test_a_chance_level_classifier_keeps_default_thresholds_and_is_recorded_as_such():
    rng = np.random.default_rng(3)
    targets = (rng.random((400, 17)) < 0.1).astype(np.uint8)
    noise = rng.random((400, 17)) * 0.3  # uninformative scores, all below 0.5
    # Tuning on noise would pick the grid's bottom (every image positive beats 0 at 0.5): it must not.
    assert np.all(tune_thresholds(noise, targets) == 0.5)
    record = validation_record(noise, targets)
    assert record["images"] == 400 and record["chance_mAP"] == pytest.approx(targets.mean(0).mean(), abs=1e-4)
    assert record["mAP"] < 1.5 * record["chance_mAP"]
    informative = targets * 0.6 + noise  # every positive scores above every negative
    assert validation_record(informative, targets)["mAP"] == pytest.approx(1.0)
    assert np.all(tune_thresholds(informative, targets) > 0.3)


def test_f2_per_class_matches_the_benchmark_metric():
    rng = np.random.default_rng(1)
    scores, targets = rng.random((200, 17)), (rng.random((200, 17)) < 0.2).astype(np.uint8)
    targets[:, 3] = 0  # a class without positives: F2 is 0, not NaN
    official = evaluate_sewerml(scores, targets)["per_class"]
    np.testing.assert_allclose(f2_per_class(scores, targets, 0.5), [official[c]["F2"] for c in SEWER_CODES])


def test_data_subsets(sewer):
    train, val = load_splits(load_recipe("vit-t", overrides=["data.fraction=0.5"]), sewer)
    assert (len(train), len(val)) == (12, 12)
    train, val = load_splits(load_recipe("vit-t", overrides=["data.every_kth=4"]), sewer)
    assert (len(train), len(val)) == (6, 3)
    assert train.filenames == [f"{i:08d}.png" for i in (1, 5, 9, 13, 17, 21)]


def test_linear_probe_trains_only_the_head():
    model, cfg, kwargs = build_model(load_recipe("vit-t", overrides=TINY))
    assert freeze_backbone(model) == 192 * 17 + 17
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    assert kwargs == {"num_classes": 17, "img_size": 32} and cfg.input_size == 32 and cfg.mean == SEWERML_MEAN


def test_dino_model_without_a_backbone_is_refused():
    with pytest.raises(DataError, match="vit-t-dino fine-tunes a DINO backbone: pass --backbone"):
        build_model(load_recipe("vit-t-dino", overrides=TINY))


def test_finetune_run_writes_a_deployable_checkpoint(sewer, tmp_path):
    recipe = load_recipe("vit-t", overrides=TINY + ["train.epochs=1"])
    result = train_classifier(recipe, sewer, out=tmp_path / "run")
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "best_metrics.json", "last.pt", "recipe.yaml",
                                                      "results.jsonl"]
    ckpt = load_checkpoint(run / "best.pt", expect_model="vit-t")
    cfg = ckpt["model_cfg"]
    assert (cfg["name"], cfg["task"], cfg["input_size"]) == ("vit-t", "classify", 32)
    assert tuple(cfg["classes"]) == SEWER_CODES
    assert tuple(cfg["mean"]) == SEWERML_MEAN and cfg["interpolation"] == "bicubic"
    assert len(cfg["thresholds"]) == 17 and all(0.05 <= t <= 0.95 for t in cfg["thresholds"])
    assert cfg["extra"]["threshold_default"] == 0.5
    assert cfg["extra"]["threshold_tuning"]["F2_CIW_tuned"] >= cfg["extra"]["threshold_tuning"]["F2_CIW_at_0.5"]
    assert ckpt["model_kwargs"] == {"num_classes": 17, "img_size": 32}
    assert load_recipe("vit-t", path=run / "recipe.yaml").train.epochs == 1
    record = json.loads((run / "results.jsonl").read_text())
    assert record["epoch"] == 0 and record["val/n_images"] == 12 and "val/AP_RB" in record
    # Evaluating the checkpoint again reproduces the metrics it was selected with.
    names, scores, targets, eval_cfg = evaluate_checkpoint(run / "best.pt", sewer, num_workers=0)
    assert len(names) == 12 and scores.shape == (12, 17) and eval_cfg.thresholds == tuple(cfg["thresholds"])
    assert evaluate_sewerml(scores, targets)["F2_CIW"] == pytest.approx(result.best_metrics["F2_CIW"], abs=1e-6)


def test_hybrid_pretraining_tracks_rankme_and_feeds_finetuning(sewer, tmp_path):
    """Hybrid (DINO + supervised) is a pretraining stage: RankMe as for DINO, backbone.pt for fine-tuning."""
    from edgesewer.models import create_model
    from edgesewer.train.dino_pretrain import pretrain_dino

    recipe = load_recipe("vit-t-dino", stage="pretrain", overrides=TINY + [
        "train.epochs=1", "dino.out_dim=64", "dino.warmup_epochs=0", "dino.mode=hybrid"])
    result = pretrain_dino(recipe, sewer, out=tmp_path / "hybrid")
    assert result.best_metrics["rankme"] > 1.0
    record = json.loads((tmp_path / "hybrid" / "results.jsonl").read_text())
    assert {"val/rankme", "val/rankme_student", "train_loss"} <= set(record)
    last = load_checkpoint(tmp_path / "hybrid" / "last.pt")
    assert last["model"]["classifier.weight"].shape == (17, 192) and "dino_loss.center" in last["model"]
    assert last["model_cfg"]["extra"]["pretrain_mode"] == "hybrid"
    backbone = torch.load(tmp_path / "hybrid" / "backbone.pt", weights_only=False)
    assert backbone["mode"] == "hybrid"
    model = create_model("vit-t-dino", img_size=32, backbone_ckpt=tmp_path / "hybrid" / "backbone.pt")
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], backbone["teacher"]["blocks.0.attn.qkv.weight"])
    # The old in-fine-tuning hybrid says where it went.
    with pytest.raises(DataError, match=r"pretraining stage now: `edgesewer pretrain vit-t-dino --mode hybrid"):
        train_classifier(load_recipe("vit-t", overrides=TINY + ["train.mode=hybrid"]), sewer, out=tmp_path / "x")


def test_hybrid_loss_is_dino_plus_weighted_supervised():
    from edgesewer.train.hybrid import HybridLoss

    class FakeDino(torch.nn.Module):
        def forward(self, student, teacher, epoch):
            return (student - teacher).pow(2).mean() + epoch

    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    logits, targets = torch.randn(4, 17), (torch.rand(2, 17) < 0.3).float()
    loss = HybridLoss(FakeDino(), torch.nn.BCEWithLogitsLoss(), weight=0.5)
    loss.epoch = 2
    value = loss({"student": student, "teacher": teacher, "logits": logits}, targets)
    expected = (student - teacher).pow(2).mean() + 2 + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets.repeat(2, 1))  # both views carry the image's labels
    torch.testing.assert_close(value, expected)


def test_dino_pretraining_feeds_finetuning(sewer, tmp_path):
    from edgesewer.models import create_model
    from edgesewer.train.dino_pretrain import pretrain_dino

    recipe = load_recipe("vit-t-dino", stage="pretrain", overrides=TINY + [
        "train.epochs=1", "dino.out_dim=64", "dino.warmup_epochs=0"])
    result = pretrain_dino(recipe, sewer, out=tmp_path / "pre")
    assert result.best_metrics["rankme"] > 1.0
    record = json.loads((tmp_path / "pre" / "results.jsonl").read_text())
    assert {"val/rankme", "val/rankme_student", "train_loss"} <= set(record)
    backbone = torch.load(tmp_path / "pre" / "backbone.pt", weights_only=False)
    model = create_model("vit-t-dino", img_size=32, backbone_ckpt=tmp_path / "pre" / "backbone.pt")
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], backbone["teacher"]["blocks.0.attn.qkv.weight"])

    finetune = load_recipe("vit-t-dino", overrides=TINY + [
        "train.epochs=1", f"model.backbone_ckpt={tmp_path / 'pre' / 'backbone.pt'}"])
    ft = train_classifier(finetune, sewer, out=tmp_path / "ft")
    assert load_checkpoint(ft.run_dir / "best.pt")["model_cfg"]["extra"]["backbone_ckpt"].endswith("backbone.pt")


def test_checkpoint_of_another_task_is_refused(tmp_path):
    from edgesewer.train.checkpoint import save_checkpoint

    cfg = {"name": "vit-t-dino", "task": "dino-pretrain", "input_size": 224}
    path = save_checkpoint(tmp_path / "pre.pt", {"model": {}, "model_cfg": cfg, "epoch": 0})
    with pytest.raises(ModelNotFound, match="pre.pt: is a dino-pretrain checkpoint of vit-t-dino, not a trained"):
        load_classifier(path)


def test_dynamic_asl_weights_follow_the_epochs_per_class_ap():
    from edgesewer.train.classify import build_loss, dynamic_weights_callback

    loss = build_loss(load_recipe("ma-q2l-r101").loss)
    assert loss.class_weights.tolist() == [2.0 if c in ("RB", "IS", "FO", "OS") else 1.0 for c in SEWER_CODES]
    record = {f"val/AP_{c}": 0.9 for c in SEWER_CODES} | {"val/AP_RB": 0.1}
    dynamic_weights_callback(loss, top_m=4)(None, record)
    # mean AP = (10 + 16 x 90) / 17 % = 85.29 %; RB: (85.29 - 10) / 10 = 7.53; the rest are above the mean -> 1
    expected = [(((10 + 16 * 90) / 17) - 10) / 10] + [1.0] * 16
    np.testing.assert_allclose(loss.class_weights.numpy(), expected, rtol=1e-6)


def test_frozen_bn_calibration_normalises_every_layer():
    from torchvision.ops.misc import FrozenBatchNorm2d

    from edgesewer.train.classify import calibrate_frozen_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 5, 3), FrozenBatchNorm2d(5))
    with torch.no_grad():
        net[0].weight.mul_(50.0)  # a badly scaled random layer, like an uncalibrated deep ResNet
    images = torch.randn(6, 3, 12, 12) * 3 + 1
    assert calibrate_frozen_bn(net, images) == 2
    with torch.no_grad():
        first, out = net[:2](images), net(images)
    for y in (first, out):  # each BN output: zero mean, unit variance per channel on the calibration batch
        torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(y.shape[1]), atol=1e-4, rtol=0)
        torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(y.shape[1]), atol=1e-3, rtol=0)
