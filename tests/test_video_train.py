"""Video training pieces: datasets, frame aggregation, recipe loading, and a tiny end-to-end run."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from edgesewer.data.video import read_labels  # noqa: E402
from edgesewer.data.video_torch import ClipFramesDataset, SuperImageDataset  # noqa: E402
from edgesewer.errors import DataError  # noqa: E402
from edgesewer.train.video import (FrameLoss, aggregate_frame_scores, load_video_checkpoint,  # noqa: E402
                                   load_video_recipe, predict_checkpoint, split_train_val, stack_frames, train_video)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: one thread is as fast, and immune to oversubscription on a busy 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _colour_video(path: Path, colour: tuple[int, int, int], n_frames: int = 20, size: int = 40) -> None:
    """A clip whose class is its colour (BGR), with a moving bar so frames differ."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    for i in range(n_frames):
        image = np.full((size, size, 3), colour, dtype=np.uint8)
        image[:, (2 * i) % size:(2 * i) % size + 4] = 128
        writer.write(image)
    writer.release()


@pytest.fixture(scope="module")
def colour_clips(tmp_path_factory):
    """24 clips: red -> ZC (normal), green -> CJ, blue -> CK, green+blue halves -> CJ + CK."""
    root = tmp_path_factory.mktemp("clips")
    labels = {}
    for i in range(24):
        kind = i % 4
        colour = [(0, 0, 200), (0, 200, 0), (200, 0, 0), (200, 200, 0)][kind]
        _colour_video(root / f"c{i:02d}.mp4", colour)
        labels[f"c{i:02d}.mp4"] = [[0], [1], [2], [1, 2]][kind]
    (root / "labels.json").write_text(json.dumps(labels))
    return root / "labels.json"


def test_superimage_dataset_layout(colour_clips):
    labels = read_labels(colour_clips)
    ds = SuperImageDataset(labels, 8, MEAN, STD)
    x, y = ds[1]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert y.tolist() == [0.0, 1.0] + [0.0] * 15
    # Green clip: most pixels have G ~200/255 -> (0.78 - 0.5) / 0.25 ~ 1.1 and R ~0 -> -2.
    assert x[1].median() == pytest.approx(1.1, abs=0.05) and x[0].median() == pytest.approx(-2.0, abs=0.05)
    assert torch.equal(ds[1][0], x)  # evaluation is deterministic (segment centres, no augmentation)
    train = SuperImageDataset(labels, 8, MEAN, STD, train=True, hflip=1.0, shuffle=1.0)
    torch.manual_seed(0)
    assert not torch.equal(train[1][0], x)  # flipped + shuffled tiles


def test_clip_frames_dataset_and_collate(colour_clips):
    labels = read_labels(colour_clips)
    ds = ClipFramesDataset(labels, 8, MEAN, STD)
    x, y = ds[2]
    assert x.shape == (9, 3, 8, 8)
    frames, targets = stack_frames([ds[0], ds[2]])
    assert frames.shape == (18, 3, 8, 8) and targets.shape == (2, 17)
    assert torch.equal(frames[9:], x)


def test_frame_loss_scores_every_frame_against_its_clip():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [0.0]])  # 2 clips x 2 frames, 1 class
    targets = torch.tensor([[1.0], [0.0]])
    loss = FrameLoss(torch.nn.BCEWithLogitsLoss())(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0], [1.0], [0.0], [0.0]]))
    assert loss.item() == pytest.approx(expected.item())


def test_aggregate_frame_scores():
    frames = np.array([[0.1, 0.9], [0.3, 0.5], [0.8, 0.4]])  # 3 frames x 2 classes
    np.testing.assert_allclose(aggregate_frame_scores(frames, "mean"), [0.4, 0.6])
    np.testing.assert_allclose(aggregate_frame_scores(frames, "max"), [0.8, 0.9])
    np.testing.assert_allclose(aggregate_frame_scores(frames, "median"), [0.3, 0.5])
    assert aggregate_frame_scores(np.stack([frames, frames]), "max").shape == (2, 2)
    with pytest.raises(ValueError):
        aggregate_frame_scores(frames, "mode")


def test_recipe_video_section_and_overrides(tmp_path):
    recipe, video = load_video_recipe(model="superimage-resnet18",
                                      overrides=["video.tile=16", "video.classes=sewerml", "train.epochs=3"])
    assert recipe.model.name == "superimage-resnet18" and recipe.train.epochs == 3
    assert (video.tile, video.classes, video.folds, video.normal_threshold) == (16, "sewerml", 5, 0.9)
    assert recipe.optim.schedule == "onecycle" and recipe.train.accum_steps == 4 and recipe.train.ema_decay == 0.999
    with pytest.raises(DataError, match=r"video.tiles: unknown setting; did you mean video.tile\?"):
        load_video_recipe(overrides=["video.tiles=16"])
    with pytest.raises(DataError, match="video.aggregate must be one of mean, max, median"):
        load_video_recipe(overrides=["video.aggregate=mode"])


def test_split_uses_folds_or_held_out_labels(colour_clips):
    labels = read_labels(colour_clips)
    _, video = load_video_recipe(overrides=["video.folds=4", "video.fold=1"])
    train, val = split_train_val(labels, video)
    assert len(train) + len(val) == 24 and 5 <= len(val) <= 7 and not set(train.names) & set(val.names)
    assert (val.targets.sum(0)[:3] >= 1).all()  # every label in the validation fold
    video.val_labels = str(colour_clips)
    assert len(split_train_val(labels, video)[1]) == 24


TINY = ["video.tile=16", "video.folds=4", "train.epochs=2", "train.batch_size=4", "train.accum_steps=2",
        "train.ema_decay=0.5", "train.device=cpu", "train.amp=false", "data.num_workers=0", "model.pretrained=false",
        "optim.lr=1e-3"]


def test_tiny_frame_model_run(colour_clips, tmp_path):
    """Frame-based route through the shared Trainer: checkpoint, val results and re-prediction agree."""
    labels = read_labels(colour_clips)
    overrides = TINY + ["video.frame_model=timm:resnet18", "video.aggregate=max"]
    recipe, video = load_video_recipe(model="superimage-resnet18", overrides=overrides)
    train, val = split_train_val(labels, video)
    result = train_video(recipe, video, train, val, out=tmp_path / "run")
    assert {"mAP", "mAP_post", "AP_ZC"} <= set(result.best_metrics)
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "results.jsonl").is_file()
    saved = json.loads((tmp_path / "run" / "val_results.json").read_text())
    assert list(saved) == val.names and len(saved[val.names[0]]) == 17
    model, cfg, aggregate = load_video_checkpoint(tmp_path / "run" / "best.pt")
    assert aggregate == "max" and cfg.extra["video_kind"] == "frames" and cfg.input_size == 16
    again = predict_checkpoint(tmp_path / "run" / "best.pt", val)
    np.testing.assert_allclose(again, result.val_scores, atol=1e-5)


def test_tiny_frame_model_evaluated_on_all_frames(colour_clips, tmp_path):
    """The report's frame baseline: validation (and re-prediction) classify every frame of each video."""
    from edgesewer.train.video import predict_all_frames

    labels = read_labels(colour_clips)
    overrides = TINY + ["video.frame_model=timm:resnet18", "video.eval_frames=all", "video.frame_step=2"]
    recipe, video = load_video_recipe(model="superimage-resnet18", overrides=overrides)
    train, val = split_train_val(labels, video)
    result = train_video(recipe, video, train, val, out=tmp_path / "run")
    model, cfg, aggregate = load_video_checkpoint(tmp_path / "run" / "best.pt")
    assert cfg.extra["eval_frames"] == "all" and cfg.extra["frame_step"] == 2 and aggregate == "mean"
    direct = predict_all_frames(model, val, cfg.input_size, cfg.mean, cfg.std, torch.device("cpu"), "mean", step=2)
    np.testing.assert_allclose(result.val_scores, direct, atol=1e-5)
    np.testing.assert_allclose(predict_checkpoint(tmp_path / "run" / "best.pt", val), direct, atol=1e-5)
    sampled = predict_checkpoint(tmp_path / "run" / "best.pt", val, eval_frames="sampled")
    assert sampled.shape == direct.shape


def test_tiny_superimage_run_through_the_cli(colour_clips, tmp_path):
    """`edgesewer video train`, then `predict` and `eval` on its checkpoint."""
    from typer.testing import CliRunner

    from edgesewer.cli.video import app

    runner = CliRunner()
    sets = [arg for item in TINY for arg in ("--set", item)]
    out = runner.invoke(app, ["train", "--labels", str(colour_clips), "--model", "superimage-resnet18",
                              "--fold", "2", "--out", str(tmp_path / "run"), *sets])
    assert out.exit_code == 0, out.output
    assert "best epoch" in out.output and "mAP" in out.output
    _, cfg, aggregate = load_video_checkpoint(tmp_path / "run" / "best.pt")
    assert aggregate is None and cfg.extra["video_kind"] == "superimage" and cfg.input_size == 48
    val_scores = json.loads((tmp_path / "run" / "val_results.json").read_text())
    out = runner.invoke(app, ["predict", "--weights", str(tmp_path / "run" / "best.pt"), "--labels", str(colour_clips),
                              "--out", str(tmp_path / "all.json")])
    assert out.exit_code == 0, out.output
    everything = json.loads((tmp_path / "all.json").read_text())
    assert len(everything) == 24
    for name, scores in val_scores.items():  # the held-out clips score the same in both passes
        np.testing.assert_allclose(everything[name], scores, atol=1e-5)
    out = runner.invoke(app, ["eval", "--results", str(tmp_path / "all.json"), "--gt", str(colour_clips)])
    assert out.exit_code == 0 and "mAP" in out.output


def test_superimage_starts_from_a_frame_classifier(tmp_path):
    import timm

    from edgesewer.errors import ModelNotFound
    from edgesewer.models.superimage import create_superimage

    frame = timm.create_model("resnet18", num_classes=17)
    torch.save({"model": frame.state_dict()}, tmp_path / "frame.pt")  # an edgesewer-style checkpoint
    model = create_superimage("superimage-resnet18", tile_size=16, classes="sewerml", backbone_ckpt=tmp_path / "frame.pt")
    assert model.cfg.extra["init"]["loaded"] == len(frame.state_dict())
    assert torch.equal(model.conv1.weight, frame.conv1.weight) and torch.equal(model.fc.bias, frame.fc.bias)
    other_head = timm.create_model("resnet18", num_classes=5)
    torch.save(other_head.state_dict(), tmp_path / "plain.pt")  # a plain state dict, another class count
    model = create_superimage("superimage-resnet18", tile_size=16, classes="sewerml", backbone_ckpt=tmp_path / "plain.pt")
    assert model.cfg.extra["init"]["skipped"] == 2  # fc.weight and fc.bias keep their fresh values
    torch.save(timm.create_model("resnet10t", num_classes=17).state_dict(), tmp_path / "r10.pt")
    with pytest.raises(ModelNotFound, match=r"r10.pt: only \d+ of 122 tensors fit resnet18"):
        create_superimage("superimage-resnet18", tile_size=16, classes="sewerml", backbone_ckpt=tmp_path / "r10.pt")


def test_k_fold_training_writes_out_of_fold_scores(colour_clips, tmp_path):
    from edgesewer.train.video_folds import train_folds

    labels = read_labels(colour_clips)
    overrides = [o for o in TINY if not o.startswith(("video.folds", "train.epochs"))]
    recipe, video = load_video_recipe(model="superimage-resnet18", overrides=overrides + ["video.folds=2", "train.epochs=1"])
    metrics = train_folds(recipe, video, labels, tmp_path / "folds")
    folds = json.loads((tmp_path / "folds" / "folds.json").read_text())["folds"]
    oof = json.loads((tmp_path / "folds" / "oof_results.json").read_text())
    assert sorted(oof) == sorted(labels.names)  # every clip scored once, by the model that did not train on it
    for k in (0, 1):
        held_out = json.loads((tmp_path / "folds" / f"fold{k}" / "val_results.json").read_text())
        assert sorted(held_out) == sorted(n for n, f in folds.items() if f == k)
        for name, scores in held_out.items():
            np.testing.assert_allclose(oof[name], scores, atol=1e-6)
    assert 0.0 <= metrics["mAP"] <= 1.0 and json.loads((tmp_path / "folds" / "oof_metrics.json").read_text()) == metrics
