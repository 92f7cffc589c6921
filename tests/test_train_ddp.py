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


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    data = make_sewerml(tmp_path / "data", n_train=16, n_val=7)
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(entry),
           "train", "vit-t", "--data", str(data), "--out", str(out), "--epochs", "1", "--imgsz", "32",
           "--batch", "4", "--workers", "0", "--device", "cpu", "--set", "train.progress=false"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

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
