"""A checkpoint is untrusted input: a pickle payload in it must not run through any command (export, eval,
train --resume, fine-tuning from a DINO backbone), the refusal is one line naming the file, and only
`--trust-checkpoint` lets such a file load. Our own checkpoints load with the weights-only reader."""

import builtins

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgesewer.cli.evaluate import eval_command  # noqa: E402
from edgesewer.cli.export import export_command  # noqa: E402
from edgesewer.cli.train import train_command  # noqa: E402
from edgesewer.cli.video import app as video_app  # noqa: E402
from edgesewer.errors import DataError  # noqa: E402
from edgesewer.models import create_model  # noqa: E402
from edgesewer.train.checkpoint import read_torch_file, save_checkpoint, trusting_checkpoints  # noqa: E402

from test_train_classify import make_sewerml  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("export")(export_command)
app.add_typer(video_app, name="video")
runner = CliRunner()


class Payload:
    """Unpickling this opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture(scope="module")
def sewer(tmp_path_factory):
    return make_sewerml(tmp_path_factory.mktemp("safety_sewerml"), n_train=8, n_val=8)


@pytest.fixture()
def evil(tmp_path):
    """A real vit-t checkpoint (it would load and run) that also carries the payload."""
    model = create_model("vit-t", img_size=32)
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "model_cfg": model.cfg.to_dict(), "model_kwargs": {"img_size": 32},
                "epoch": 0, "payload": Payload(marker)}, path)
    return path, marker


def refusal(result, path) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {path}: refused: ") and "pickled io.open" in lines[0], lines[0]
    assert "--trust-checkpoint" in lines[0]
    return lines[0]


def test_the_payload_is_live_when_trusted(evil):
    path, marker = evil  # the guard below would prove nothing if the payload could not run
    with trusting_checkpoints():
        assert read_torch_file(path)["epoch"] == 0
    assert marker.exists()


@pytest.mark.parametrize("command", ["export", "eval", "resume", "backbone", "video-predict"])
def test_no_command_runs_a_checkpoints_payload(command, evil, sewer, tmp_path):
    path, marker = evil
    args = {
        "export": ["export", "--model", "vit-t", "--weights", str(path), "--target", "ort-cpu", "--precision", "fp32",
                   "--no-accuracy", "--out", str(tmp_path / "exp")],
        "eval": ["eval", "--weights", str(path), "--data", str(sewer)],
        "resume": ["train", "vit-t", "--data", str(sewer), "--resume", str(path), "--imgsz", "32", "--workers", "0",
                   "--out", str(tmp_path / "run")],
        "backbone": ["train", "vit-t-dino", "--data", str(sewer), "--backbone", str(path), "--imgsz", "32",
                     "--workers", "0", "--out", str(tmp_path / "run")],
        "video-predict": ["video", "predict", "--weights", str(path), "--videos", str(tmp_path),
                          "--out", str(tmp_path / "r.json")],
    }[command]
    refusal(runner.invoke(app, args), path)
    assert not marker.exists()


def test_trust_checkpoint_flag_lets_a_trusted_file_load(evil, sewer, tmp_path):
    path, marker = evil
    result = runner.invoke(app, ["eval", "--weights", str(path), "--data", str(sewer), "--trust-checkpoint",
                                 "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert marker.exists() and (tmp_path / "m.json").is_file()


def test_own_checkpoints_with_numpy_values_load_weights_only(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "metrics": {"F2": np.float64(0.25), "n": np.int64(3)},
             "rng": {"numpy": np.arange(4, dtype=np.uint32)}}
    loaded = read_torch_file(save_checkpoint(tmp_path / "own.pt", state))
    assert loaded["metrics"] == {"F2": 0.25, "n": 3} and type(loaded["metrics"]["F2"]) is float
    assert loaded["rng"]["numpy"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own.pt"]  # no .tmp left


def test_unreadable_and_unsafe_files_are_one_line_data_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"garbage.pt: not a readable PyTorch checkpoint"):
        read_torch_file(garbage)
    with pytest.raises(DataError, match=r"missing.pt: backbone checkpoint not found"):
        read_torch_file(tmp_path / "missing.pt", "backbone checkpoint")
