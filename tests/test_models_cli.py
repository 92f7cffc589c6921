"""`edgesewer models`: table and JSON listing of the zoo with parameter counts."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from edgesewer.cli.models import models_command
from edgesewer.models import q2l, vit  # noqa: F401 - register the families this test lists


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("models")(models_command)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `models` a sub-command, as in the real CLI
        pass

    return app


def test_models_json_lists_names_tasks_sizes_and_params():
    result = CliRunner().invoke(_app(), ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"vit-t", "vit-s", "vit-t-dino", "vit-s-dino", "q2l-r101", "ma-q2l-r101"} <= set(rows)
    assert rows["vit-t"] == {"name": "vit-t", "task": "classify", "input_size": 224, "frames": None,
                             "params": 5_527_697, "params_without_attention": None, "edge": True, "status": "ready"}
    assert rows["video-swin3d-b"] == {"name": "video-swin3d-b", "task": "video", "input_size": 224, "frames": 32,
                                      "params": 87_656_409, "params_without_attention": None, "edge": False,
                                      "status": "ready"}
    assert rows["vit-s-dino"]["params"] == 21_672_209
    assert rows["q2l-r101"]["params"] == 193_543_377
    assert rows["ma-q2l-r101"]["input_size"] == 448 and rows["ma-q2l-r101"]["params"] == 227_157_201
    assert all(isinstance(row["params"], int) for row in rows.values())


def test_ma_q2l_is_counted_both_ways_and_big_models_are_not_edge_sized():
    """The MA-Q2L paper's 143M leaves out the attention modules (1 encoder self-attention, 2 decoder
    cross-attentions, 2 label self-attentions: 5 x 16.78M); Q2L without them is 143.19M."""
    result = CliRunner().invoke(_app(), ["models", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["ma-q2l-r101"]["params_without_attention"] == 143_230_161
    assert rows["q2l-r101"]["params_without_attention"] == 143_187_153
    assert not rows["ma-q2l-r101"]["edge"] and rows["vit-s"]["edge"]
    assert rows["superimage-efficientnet-b0"]["edge"] and rows["superimage-resnet18"]["edge"]
    for name in ("superimage-tresnet-xl", "superimage-nfnet-f6", "superimage-efficientnet-l2", "video-swin3d-b"):
        assert rows[name]["edge"] is False and rows[name]["params_without_attention"] is None
    assert rows["superimage-efficientnet-l2"]["params"] == 474_897_893


def test_models_table():
    result = CliRunner().invoke(_app(), ["models"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "ma-q2l-r101" in result.stdout and "227.16M" in result.stdout and "5.53M" in result.stdout
    swin = next(line for line in result.stdout.splitlines() if "video-swin3d-b" in line)
    assert "32x224" in swin and "87.66M" in swin  # a frame stack: T x side
    wide = CliRunner().invoke(_app(), ["models"], env={"COLUMNS": "220"})
    assert "143.23M w/o attention" in wide.stdout and "edge: at most 30M parameters" in wide.stdout
