"""SFR-Net at the edge: a new class file gives a new output width, ONNX Runtime matches PyTorch, and
`edgesewer run` shows the new classes; no retraining involved."""

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from edgesewer.data.preprocess import preprocess  # noqa: E402
from edgesewer.errors import DataError  # noqa: E402
from edgesewer.models import create_model  # noqa: E402
from edgesewer.models.sfrnet.adapters import adapters_of  # noqa: E402
from edgesewer.models.sfrnet.class_texts import load_class_texts  # noqa: E402
from edgesewer.models.sfrnet.edge import build_edge_model, for_export  # noqa: E402

NEW_CLASSES = """\
# two trained classes, one unseen Sewer-ML class and one the model has never heard of
RB.name: crack, break or collapse of the pipe
RB.text: a sewer pipe inspection image showing a cracked or broken pipe wall.
PB.name: drilled connection
PB.text: a sewer pipe inspection image showing a neat circular drilled side connection.
XX.name: exposed reinforcement
XX.text: a sewer pipe inspection image where the concrete is gone and rusty steel bars show.
ZZ.name: camera lens fogged
ZZ.text: a blurred sewer inspection frame because the camera lens is fogged or wet.
"""
OFFSET = 0.25


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A checkpoint as the zero-shot trainer writes it: non-zero adapters and a score calibration."""
    from edgesewer.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("sfr-net-tiny")
    with torch.no_grad():
        for adapter in adapters_of(model):
            adapter.up.weight.normal_(std=0.02)
    cfg = model.cfg
    cfg.extra = {**cfg.extra, "score_offset": OFFSET, "score_temperature": 0.1}
    path = tmp_path_factory.mktemp("run") / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_cfg": cfg.to_dict(), "epoch": 0,
                           "model_kwargs": {"class_texts": model.class_texts.as_rows()}})
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        cv2.circle(image, (80, 60), 20 + 10 * i, (30, 30, 30), -1)
        cv2.imwrite(str(folder / f"frame{i}.png"), image)
    return folder


@pytest.fixture(scope="module")
def from_checkpoint(trained_checkpoint):
    """What the export pipeline loads (`load_for_export`); edge models share, never change, its modules."""
    from edgesewer.export.weights import load_for_export

    return load_for_export("sfr-net-tiny", str(trained_checkpoint))


def test_edge_model_equals_sfrnet_on_its_own_classes(from_checkpoint):
    loaded = for_export(from_checkpoint, None)
    model = from_checkpoint.model
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        logits = loaded.model(images)
    assert loaded.cfg.classes == model.cfg.classes and logits.shape == (2, 17)
    assert torch.allclose(loaded.model.scores(images), expected, atol=1e-5)
    assert torch.allclose(logits, (expected - OFFSET) / 0.1, atol=1e-4)


def test_new_class_file_changes_width_and_matches_pytorch_in_onnxruntime(from_checkpoint, trained_checkpoint, frames,
                                                                        tmp_path):
    from edgesewer.export.metadata import build_sidecar, write_sidecar
    from edgesewer.export.onnx_export import export_onnx
    from edgesewer.export.parity import compare_outputs, onnx_outputs, torch_outputs

    classes_file = tmp_path / "classes.txt"
    classes_file.write_text(NEW_CLASSES, encoding="utf-8")
    loaded = for_export(from_checkpoint, classes_file)
    cfg = loaded.cfg
    assert cfg.classes == ("RB", "PB", "XX", "ZZ") and cfg.task == "zeroshot"
    assert cfg.extra["trained_classes"] == ["RB"] and cfg.extra["zero_shot_classes"] == ["PB", "XX", "ZZ"]

    # The baked constants are the host-side text pass: adapted descriptions and a plain-CLIP name graph.
    model = from_checkpoint.model
    texts = load_class_texts(classes_file)
    with torch.no_grad():
        assert torch.allclose(loaded.model.text, model.encode_texts(texts))
        assert torch.allclose(loaded.model.adjacency, model.class_graph(texts))
        images = torch.randn(2, 3, 64, 64)
        by_hand = model.score(model.backbone.image_tokens(images), model.encode_texts(texts), model.class_graph(texts))
        assert torch.allclose(loaded.model.scores(images), by_hand, atol=1e-5)

    path = tmp_path / "sfr-net-tiny.fp32.onnx"
    exported = export_onnx(loaded.model, cfg, path)
    assert exported.outputs[0].name == "logits" and exported.outputs[0].shape == (-1, 4)
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(frames.glob("*.png"))]
    inputs = preprocess(images, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)
    reference = torch_outputs(loaded.model, cfg, inputs)
    result = compare_outputs(reference, onnx_outputs(path, inputs), cfg.task)
    print(f"sfr-net-tiny, 4 classes: max |logit diff| {result.max_abs_diff:.2e}, agreement {result.decision_agreement}")
    assert reference.shape == (3, 4)
    assert result.max_abs_diff < 1e-4 and result.decision_agreement == 1.0

    sidecar = build_sidecar(model="sfr-net-tiny", task=cfg.task, precision="fp32", target="ort-cpu", model_file=path,
                            onnx_sha256="0" * 64, opset=exported.opset, model_cfg=cfg.to_dict(),
                            inputs=[t.as_dict() for t in exported.inputs],
                            outputs=[t.as_dict() for t in exported.outputs], weights=str(trained_checkpoint),
                            parity=result.as_dict())
    write_sidecar(path, sidecar)
    # Thresholds just under each class's lowest probability on these frames: every class fires.
    probs = 1 / (1 + np.exp(-reference.astype(np.float64)))
    thresholds = ",".join(f"{c}={p / 2:.6g}" for c, p in zip(cfg.classes, probs.min(axis=0)))
    _run_edgesewer(path, frames, tmp_path / "events.jsonl", thresholds)


def _run_edgesewer(artifact, frames, events, thresholds):
    """`edgesewer run` on the image folder; with the given thresholds each frame lists every class."""
    import typer
    from typer.testing import CliRunner

    from edgesewer.cli.run import run_command

    app = typer.Typer()
    app.command()(run_command)
    app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps `run_command` addressable by name
    result = CliRunner().invoke(app, ["run-command", "--model", str(artifact), "--source", str(frames),
                                      "--headless", "--output", "none", "--events", str(events),
                                      "--events-every-frame", "--threshold", thresholds])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in events.read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    assert list(start["thresholds"]) == ["RB", "PB", "XX", "ZZ"]
    detections = [r for r in records if r["event"] == "detection"]
    assert len(detections) == 3
    assert all(set(r["codes"]) == {"RB", "PB", "XX", "ZZ"} for r in detections)


def test_classes_option_is_refused_for_other_models(from_checkpoint):
    class Loaded:
        model = torch.nn.Linear(2, 2)
        cfg = from_checkpoint.cfg

    with pytest.raises(DataError, match="zero-shot models only"):
        for_export(Loaded(), None)


def test_default_edge_model_keeps_trained_thresholds_only_for_the_same_classes(from_checkpoint):
    model = from_checkpoint.model
    cfg = dataclasses.replace(from_checkpoint.cfg, thresholds=tuple([0.4] * 17))
    assert build_edge_model(model, cfg=cfg).cfg.thresholds == tuple([0.4] * 17)
    subset = model.class_texts.subset(["RB", "OB"])
    assert build_edge_model(model, subset, cfg).cfg.thresholds is None
