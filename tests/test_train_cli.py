"""`edgesewer train / pretrain / eval --weights`: a tiny run end to end, and one-line errors for the
mistakes users make (missing data, a CSV without the 17 codes, unknown model, another model's checkpoint)."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgesewer.cli.evaluate import eval_command  # noqa: E402
from edgesewer.cli.train import pretrain_command, train_command  # noqa: E402
from edgesewer.modelcfg import ModelCfg  # noqa: E402
from edgesewer.train.checkpoint import save_checkpoint  # noqa: E402

from test_train_classify import make_sewerml  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_command)
app.command("pretrain")(pretrain_command)
app.command("eval")(eval_command)
runner = CliRunner()
TINY = ["--imgsz", "32", "--batch", "8", "--workers", "0", "--set", "train.progress=false"]


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def sewer(tmp_path_factory):
    return make_sewerml(tmp_path_factory.mktemp("cli_sewerml"))


@pytest.fixture(scope="module")
def trained(sewer, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run") / "vit"
    result = runner.invoke(app, ["train", "vit-t", "--data", str(sewer), "--epochs", "1", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_command_runs_and_prints_next_steps(trained, sewer):
    out, output = trained
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "recipe.yaml").is_file()
    assert "best epoch 1: F2_CIW" in output and f"run folder: {out}" in output
    assert f"next: edgesewer eval --weights {out / 'best.pt'} --data {sewer}" in output


def test_eval_weights_prints_and_writes_the_metrics(trained, sewer, tmp_path):
    out, _ = trained
    report, scores = tmp_path / "m.json", tmp_path / "scores.csv"
    result = runner.invoke(app, ["eval", "--weights", str(out / "best.pt"), "--data", str(sewer), "--json",
                                 str(report), "--save-scores", str(scores)])
    assert result.exit_code == 0, result.output
    assert "F2_CIW with the checkpoint's per-class thresholds" in result.output
    data = json.loads(report.read_text())
    assert data["model"] == "vit-t" and data["n_images"] == 12 and len(data["tuned_thresholds"]["thresholds"]) == 17
    best = json.loads((out / "best_metrics.json").read_text())
    assert data["F2_CIW"] == pytest.approx(best["F2_CIW"], abs=1e-6)
    assert scores.read_text().splitlines()[0].startswith("Filename,RB,OB")


def test_missing_data_path(tmp_path):
    line = error_line(runner.invoke(app, ["train", "vit-t", "--data", str(tmp_path / "nowhere")]))
    assert line == f"error: {tmp_path / 'nowhere'}: no such data folder"


def test_unknown_model_suggests_close_names(sewer):
    line = error_line(runner.invoke(app, ["train", "vit-x", "--data", str(sewer)]))
    assert "unknown model 'vit-x'; did you mean" in line and "vit-t" in line
    line = error_line(runner.invoke(app, ["pretrain", "vit-q-dino", "--data", str(sewer)]))
    assert "unknown model 'vit-q-dino'" in line


def test_csv_without_the_17_columns(sewer, tmp_path):
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    for split in ("Train", "Val"):
        (bad / f"SewerML_{split}.csv").write_text("Filename,RB,OB,Defect\n00000001.png,1,0,1\n")
    (bad / "images" / "00000001.png").write_bytes((sewer / "images" / "00000001.png").read_bytes())
    line = error_line(runner.invoke(app, ["train", "vit-t", "--data", str(bad), *TINY]))
    assert line.startswith(f"error: {bad / 'SewerML_Train.csv'}: missing label column(s) PF, DE, FS")
    for split in ("Train", "Val"):
        (bad / f"SewerML_{split}.csv").write_text("Filename\n00000001.png\n")
    line = error_line(runner.invoke(app, ["train", "vit-t", "--data", str(bad), *TINY]))
    assert line == f"error: {bad / 'SewerML_Train.csv'}: has no label columns; training needs the 17 Sewer-ML codes"


def test_checkpoint_of_another_model(trained, sewer, tmp_path):
    out, _ = trained
    line = error_line(runner.invoke(app, ["train", "vit-s", "--data", str(sewer), "--resume", str(out / "last.pt"),
                                          "--out", str(tmp_path / "s"), *TINY]))
    assert line == f"error: {out / 'last.pt'}: checkpoint is for model vit-t, not vit-s"
    pre = save_checkpoint(tmp_path / "pre.pt", {"model": {}, "epoch": 0, "model_cfg": ModelCfg(
        name="vit-t-dino", task="dino-pretrain", input_size=224, classes=()).to_dict()})
    line = error_line(runner.invoke(app, ["eval", "--weights", str(pre), "--data", str(sewer)]))
    assert line == f"error: {pre}: is a dino-pretrain checkpoint of vit-t-dino, not a trained classifier"


def test_bad_override_and_eval_usage(sewer):
    line = error_line(runner.invoke(app, ["train", "vit-t", "--data", str(sewer), "--set", "train.epoch=2"]))
    assert line == "error: --set train.epoch=2: unknown setting train.epoch; did you mean train.epochs?"
    line = error_line(runner.invoke(app, ["eval", "--weights", "best.pt"]))
    assert "--weights needs --data DIR" in line
    line = error_line(runner.invoke(app, ["eval"]))
    assert line == "error: give --scores CSV and --gt CSV, or --weights CKPT and --data DIR"


def test_pretrain_command_points_at_the_fine_tuning_step(sewer, tmp_path):
    out = tmp_path / "pre"
    result = runner.invoke(app, ["pretrain", "vit-t-dino", "--data", str(sewer), "--epochs", "1", "--out", str(out),
                                 "--set", "dino.out_dim=64", *TINY])
    assert result.exit_code == 0, result.output
    assert "best epoch 1: rankme" in result.output
    assert f"next: edgesewer train vit-t-dino --data {sewer} --backbone {out / 'backbone.pt'}" in result.output
    line = error_line(runner.invoke(app, ["train", "vit-t-dino", "--data", str(sewer), *TINY]))
    assert line.startswith("error: vit-t-dino fine-tunes a DINO backbone: pass --backbone")
