"""The export refuses a precision variant that loses too much of the model's main metric.

The model has learned: vit-t at 32 px trained for a few seconds on a colour-coded Sewer-ML set
(three codes, each shown by one colour channel), so fp32 is perfect and a healthy int8 keeps it.
A broken calibration (every activation range forced to 1 % of its measured size) clips nearly
every activation: int8 then loses well over the 1.5-point limit.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import edgesewer.export.calibrate as calibrate_module
from edgesewer.cli.export import export_command
from edgesewer.data.sewerml import write_labels_csv
from edgesewer.errors import ExportError
from edgesewer.export.accuracy import AccuracyRow, gate_verdicts, main_metric
from edgesewer.export.calibrate import LoadedBatches, input_preparer, iter_batches, select_images
from edgesewer.export.metadata import read_sidecar
from edgesewer.export.pipeline import ExportOptions, run_export
from edgesewer.metrics.sewerml import evaluate_sewerml
from edgesewer.taxonomy import SEWER_CODES
from edgesewer.train.checkpoint import save_checkpoint
from test_export_onnx import make_vit

SIZE = 32
SHOWN = ("RB", "OB", "FS")  # code shown by the red, green, blue channel


def colour_coded_sewerml(root, n_train=96, n_val=48, seed=0):
    """Images whose channel c is bright exactly when code SHOWN[c] is present (plus texture noise)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    columns = [SEWER_CODES.index(code) for code in SHOWN]
    for split, count in (("Train", n_train), ("Val", n_val)):
        names, labels = [], np.zeros((count, len(SEWER_CODES)), dtype=np.uint8)
        for i in range(count):
            present = rng.random(3) < 0.5
            labels[i, columns] = present
            rgb = np.where(present, 200, 50)[None, None, :] + rng.integers(-25, 26, (SIZE, SIZE, 3))
            names.append(f"{split[0]}{i:04d}.png")
            cv2.imwrite(str(root / "images" / names[-1]), cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))
        write_labels_csv(root / f"SewerML_{split}.csv", names, labels, [0] * count)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, runs folder) with a vit-t checkpoint that has learned the colour code."""
    root = tmp_path_factory.mktemp("gate")
    data = colour_coded_sewerml(root / "sewerml")
    model, cfg = make_vit(imgsz=SIZE)
    images = select_images(data, "classify", 96, split="Train")
    inputs = torch.from_numpy(np.concatenate(list(iter_batches(images.paths, input_preparer(cfg), 32,
                                                               LoadedBatches()))))
    targets = torch.from_numpy(images.labels.astype(np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    torch.manual_seed(0)
    for _ in range(60):  # about 5 s on 2 cores
        batch = torch.randint(0, len(inputs), (32,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_checkpoint(root / "runs" / "vit-t" / "run1" / "best.pt",
                    {"model": model.state_dict(), "model_cfg": cfg.to_dict(), "epoch": 1,
                     "model_kwargs": {"img_size": SIZE}})
    return data, root / "runs"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEWER_CACHE", str(tmp_path / "cache"))


def options(trained, out, **more) -> ExportOptions:
    data, runs = trained
    # The TensorRT target writes fp32 + the Q/DQ int8 (no TensorRT here: the engine is left to `edgesewer build`).
    return ExportOptions(model="vit-t", precision="int8", target="tensorrt", calib_data=data, calib_images=64,
                         calib_method="minmax", parity_images=8, out=out, runs_dir=runs, progress=False, **more)


def broken_calibration(monkeypatch, factor=0.01):
    """Calibrate as usual, then force every activation range to `factor` x its measured size: a scale forced
    wrong, so int8 clips nearly every activation of a real image."""
    from onnxruntime.quantization.calibrate import TensorData, load_tensors_data, save_tensors_data

    real = calibrate_module.calibrate

    def broken(*args, **kwargs):
        result = real(*args, **kwargs)
        ranges = load_tensors_data(result.cache_path)
        for name in list(ranges.keys()):
            low, high = ranges[name].range_value
            ranges[name] = TensorData(lowest=(low * factor).astype(low.dtype), highest=(high * factor).astype(high.dtype))
        save_tensors_data(ranges, result.cache_path)
        return result

    monkeypatch.setattr(calibrate_module, "calibrate", broken)


@pytest.mark.slow  # the trained fixture: about 30 s on 2 idle cores
def test_gate_passes_a_healthy_int8_and_records_the_deltas(trained, tmp_path):
    out = tmp_path / "out"
    run_export(options(trained, out), log=lambda s: None)
    sidecars = {p: read_sidecar(out / f"vit-t.{p}.onnx") for p in ("fp32", "int8")}
    fp32 = sidecars["fp32"]["accuracy"]
    # The model has learned the colour code: fp32 scores what perfect predictions score on this set
    # (only 3 of the 17 codes occur, so the CIW-weighted F2 of a perfect model is about 0.33).
    labels = select_images(trained[0], "classify", 10**6, split="Val").labels
    perfect = evaluate_sewerml(labels.astype(float), labels, threshold=0.5)
    assert fp32["F2_CIW"] == pytest.approx(perfect["F2_CIW"], abs=1e-9) and fp32["images"] == len(labels)
    for precision in ("int8",):
        gate = sidecars[precision]["accuracy"]["gate"]
        assert gate["metric"] == "F2_CIW" and gate["limit_points"] == 1.5 and gate["passed"] is True
        assert gate["loss_points"] == pytest.approx(100 * (fp32["F2_CIW"] - sidecars[precision]["accuracy"]["F2_CIW"]))
        assert gate["loss_points"] <= 1.5 and gate["accepted_loss"] is False
    assert sidecars["fp32"]["accuracy"]["gate"]["limit_points"] is None


@pytest.mark.slow  # the trained fixture: about 30 s on 2 idle cores
def test_gate_refuses_int8_from_a_broken_calibration(trained, tmp_path, monkeypatch):
    broken_calibration(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"int8 loses \d+\.\d+ points of F2_CIW against fp32") as info:
        run_export(options(trained, out), log=lambda s: None)
    loss = float(str(info.value).split(" loses ")[1].split(" ")[0])
    assert loss > 3.0  # at least twice the 1.5-point limit, not a borderline case
    assert "--accept-accuracy-loss" in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() or not list(out.glob("*.onnx"))  # nothing published

    # The limit is an option: raised above any loss, the same export passes.
    run_export(options(trained, out, max_int8_loss=100.0), log=lambda s: None)
    assert read_sidecar(out / "vit-t.int8.onnx")["accuracy"]["gate"]["passed"] is True


@pytest.mark.slow  # the trained fixture: about 30 s on 2 idle cores
def test_accept_accuracy_loss_writes_and_records_it(trained, tmp_path, monkeypatch):
    broken_calibration(monkeypatch)
    out = tmp_path / "out"
    result = run_export(options(trained, out, accept_accuracy_loss=True), log=lambda s: None)
    gate = read_sidecar(out / "vit-t.int8.onnx")["accuracy"]["gate"]
    assert gate["passed"] is False and gate["accepted_loss"] is True and gate["loss_points"] > 3.0
    assert any(note.startswith("--accept-accuracy-loss: int8 written") for note in result.notes)


@pytest.mark.slow  # the trained fixture: about 30 s on 2 idle cores
def test_cli_gate_is_a_one_line_error_with_exit_code(trained, tmp_path, monkeypatch):
    broken_calibration(monkeypatch)
    app = typer.Typer()
    app.command("export")(export_command)
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    data, runs = trained
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").symlink_to(runs)
    result = CliRunner().invoke(app, ["export", "--model", "vit-t", "--precision", "int8", "--target", "tensorrt",
                                      "--calib-data", str(data), "--calib-images", "64", "--calib-method", "minmax",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: int8") and " loses " in lines[-1] and "points of F2_CIW" in lines[-1]


def test_main_metric_per_task_and_limits_per_precision():
    assert (main_metric("classify"), main_metric("segment"), main_metric("zeroshot")) == ("F2_CIW", "ODS", "mAP")
    rows = [AccuracyRow("fp32", "a", {"ODS": 0.700, "images": 5}, None),
            AccuracyRow("fp16", "b", {"ODS": 0.696, "images": 5}, None),
            AccuracyRow("int8", "c", {"ODS": 0.690, "images": 5}, 8),
            AccuracyRow("int8-cpu", "d", {"ODS": 0.680, "images": 5}, 8)]
    verdicts = {v.precision: v for v in gate_verdicts(rows, "segment")}
    assert verdicts["fp16"].loss_points == pytest.approx(0.4) and not verdicts["fp16"].passed  # > 0.3
    assert verdicts["int8"].loss_points == pytest.approx(1.0) and verdicts["int8"].passed  # <= 1.5
    assert verdicts["int8-cpu"].loss_points == pytest.approx(2.0) and not verdicts["int8-cpu"].passed
    loose = {v.precision: v.passed for v in gate_verdicts(rows, "segment", max_fp16_loss=0.5, max_int8_loss=2.0)}
    assert loose == {"fp32": True, "fp16": True, "int8": True, "int8-cpu": True}
