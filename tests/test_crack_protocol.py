"""One crack-accuracy protocol: eval, the export report, the benchmark, the runtime and training validation agree.

One SCNet checkpoint (64-px tiles, trained for a few seconds so that its map follows the cracks:
an untrained map is so flat that its best threshold is t = 0, "everything is crack", where PyTorch
and ONNX Runtime differ only in which probabilities underflow to exactly 0) is scored on the same test images by `edgesewer eval --weights` (PyTorch), the export's accuracy
report and the benchmark's scorer (ONNX Runtime), the runtime's `--seg-tiles` predictor and the
trainer's validation. They must give one ODS; the old squash-to-the-input-size protocol must not.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from edgesewer.benchmark.measure import BenchmarkRow, score_accuracy
from edgesewer.cli import app
from edgesewer.data.crack import CrackFolder
from edgesewer.data.crack_torch import CrackEvalDataset, CrackTrainDataset
from edgesewer.export.accuracy import evaluation_set
from edgesewer.export.metadata import read_sidecar
from edgesewer.export.pipeline import ExportOptions, run_export
from edgesewer.metrics.crack import CrackMetrics
from edgesewer.models.scnet import scnet
from edgesewer.runtime.artifact import load_artifact
from edgesewer.runtime.predictors import load_predictor
from edgesewer.train.checkpoint import save_checkpoint
from edgesewer.train.losses_seg import SCNetLoss
from edgesewer.train.segment import CrackEvaluator
from test_crack_data import make_deepcrack

TILE = 64


def briefly_trained_scnet(data, epochs: int = 2):
    """SCNet after 8 Adam steps on 64-px crops of the fixture's dark lines (about 5 s on 2 cores)."""
    torch.manual_seed(0)
    model = scnet()
    loader = torch.utils.data.DataLoader(CrackTrainDataset(CrackFolder(data, "train"), crop=TILE, repeats=8),
                                         batch_size=8, shuffle=True)
    loss_fn, optimizer = SCNetLoss(focal_reduction="mean"), torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
            optimizer.step()
    return model.eval()


@pytest.mark.slow
def test_every_crack_scorer_gives_one_ods(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEWER_CACHE", str(tmp_path / "cache"))
    data = make_deepcrack(tmp_path / "dc", n_train=4, n_test=3)  # 128x96 images: 3 x 2 tiles of 64 px each
    model = briefly_trained_scnet(data)
    cfg = dataclasses.replace(model.cfg, input_size=TILE, thresholds=(0.5,))
    ckpt = save_checkpoint(tmp_path / "runs" / "scnet" / "run1" / "best.pt",
                           {"model": model.state_dict(), "model_cfg": cfg.to_dict(), "epoch": 1, "model_kwargs": {}})

    # edgesewer eval --weights (PyTorch, tiled at native resolution)
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", "--weights", str(ckpt), "--data", str(data), "--split", "test",
                                      "--json", str(report), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(report.read_text())
    assert evaluated["images"] == 3 and evaluated["tile"] == TILE

    # the export's accuracy report (ONNX Runtime)
    out = tmp_path / "export"
    run_export(ExportOptions(model="scnet", weights=str(ckpt), precision="fp32", target="ort-cpu", calib_data=data,
                             parity_images=2, out=out, runs_dir=tmp_path / "runs", simplify=False, progress=False),
               log=lambda s: None)
    exported = read_sidecar(out / "scnet.fp32.onnx")["accuracy"]

    # the benchmark's scorer on the same artifact
    row = BenchmarkRow("scnet", "ort", "fp32")
    images = evaluation_set(data, "segment")
    score_accuracy(load_artifact(out / "scnet.fp32.onnx"), images, 1, row)
    assert row.accuracy_data == f"{data} (test)"

    # the runtime's tiled predictor, frame by frame
    predictor = load_predictor(out / "scnet.fp32.onnx", "segment", "ort", tiles=True)
    runtime = CrackMetrics()
    for rgb, gt in CrackFolder(data, "test"):
        runtime.update(predictor.run([predictor.prepare(rgb)])[0]["prob"][0], gt)

    # training validation (the Trainer's evaluate_fn on the val loader it builds)
    loader = torch.utils.data.DataLoader(CrackEvalDataset(CrackFolder(data, "test"), mode="full"), batch_size=1)
    validation = CrackEvaluator(TILE)(model, loader, torch.device("cpu"))

    ods = {"eval": evaluated["ODS"], "export": exported["ODS"], "benchmark": row.accuracy["ODS"],
           "runtime": runtime.compute()["ODS"], "validation": validation["ODS"]}
    assert 0.3 < ods["eval"] < 0.98, ods  # a map that follows the cracks, with a real threshold sweep
    assert ods["validation"] == pytest.approx(ods["eval"], abs=1e-9)  # both PyTorch
    assert ods["export"] == ods["benchmark"]  # one function on one artifact
    assert ods["runtime"] == pytest.approx(ods["export"], abs=1e-4)  # ONNX Runtime at another tile batch size
    assert ods["export"] == pytest.approx(ods["eval"], abs=2e-3), ods  # PyTorch vs ONNX Runtime numerics
    for key in ("OIS", "AUPRC", "IoU", "region_F1"):
        assert exported[key] == pytest.approx(evaluated[key], abs=5e-3), key

    # The old report squashed whole images to the input size: a different number, which this test would catch.
    squashed = CrackMetrics()
    with torch.no_grad():
        for x, y in CrackEvalDataset(CrackFolder(data, "test"), size=TILE, mode="resize"):
            squashed.update(model(x[None])[0, 0].numpy(), y[0].numpy() > 0.5)
    assert abs(squashed.compute()["ODS"] - ods["eval"]) > 0.01, (squashed.compute()["ODS"], ods)
