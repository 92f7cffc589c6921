"""`torchrun --nproc_per_node 2` (gloo on CPU) trains ViT-T for a few steps and writes one checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from edgesewer.train.checkpoint import load_checkpoint  # noqa: E402

from test_train_classify import make_sewerml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The console script may not be installed in a source checkout: torchrun runs this tiny entry point.
ENTRY = """
import typer
from edgesewer.cli.train import train_command
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_command)
app.command("unused")(lambda: None)  # two commands, so typer keeps the `train` sub-command name
app()
"""


def train(tmp_path, data, out, nproc: int, batch: int) -> "subprocess.CompletedProcess[str]":
    """Train vit-t at 32 px for one epoch: `nproc` gloo processes of `batch` images each (1: no torchrun).

    Plain SGD at a large lr and no augmentation, so the weights move far in 2 steps and depend only
    on the data each step sees (Adam would scale away the gradients' size; augmentation differs per rank).
    """
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else []
    cmd = [sys.executable, *launcher, str(entry),
           "train", "vit-t", "--data", str(data), "--out", str(out), "--epochs", "1", "--imgsz", "32",
           "--batch", str(batch), "--workers", "0", "--device", "cpu", "--set", "train.progress=false",
           "--set", "augment.name=none", "--set", "optim.name=sgd", "--set", "optim.lr=0.1",
           "--set", "optim.scale_lr=false", "--set", "optim.momentum=0.9"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = (load_checkpoint(p, expect_model="vit-t")["model"] for p in (a, b))
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


@pytest.mark.slow
def test_torchrun_two_processes_gloo_equals_one_process_on_the_same_global_batch(tmp_path):
    data = make_sewerml(tmp_path / "data", n_train=16, n_val=7)
    out = tmp_path / "run"
    proc = train(tmp_path, data, out, nproc=2, batch=4)

    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]  # written once, by rank 0
    records = (out / "results.jsonl").read_text().splitlines()
    assert len(records) == 1
    record = json.loads(records[0])
    # 16 images / 2 ranks / batch 4 = 2 optimiser steps; validation gathers all 7 rows from both ranks.
    assert record["step"] == 2 and record["val/n_images"] == 7
    last = load_checkpoint(out / "last.pt", expect_model="vit-t")
    assert last["trainer"]["world_size"] == 2 and len(last["rng"]) == 2  # each rank's RNG, for exact resume
    assert not any(k.startswith("module.") for k in last["model"])  # saved unwrapped from DDP
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports

    # One process with the same global batch (8) sees the same images per step (the shared sampler
    # deals one permutation out to the ranks) and averages the same gradients: the same weights.
    single = tmp_path / "single"
    train(tmp_path, data, single, nproc=1, batch=8)
    assert json.loads((single / "results.jsonl").read_text().splitlines()[0])["step"] == 2
    same = max_weight_difference(out / "last.pt", single / "last.pt")
    # A different global batch (4: four steps) moves the weights elsewhere: the tolerance is meaningful.
    other = tmp_path / "other"
    train(tmp_path, data, other, nproc=1, batch=4)
    different = max_weight_difference(single / "last.pt", other / "last.pt")
    assert same < 1e-4 and different > 100 * max(same, 1e-6), (same, different)
