"""The CLI surface: the registered commands by name (not words that happen to appear in the help text)."""

import inspect

import typer
from typer.testing import CliRunner

from edgesewer.cli import app
from edgesewer.cli import batch, evaluate, export, train

runner = CliRunner()

TOP_LEVEL = {"data", "video", "train", "pretrain", "eval", "demo", "models", "export", "build", "run", "batch",
             "benchmark"}
GROUPS = {"data": {"synth"},
          "video": {"cut-synth", "frames", "folds", "train", "folds-train", "predict", "ensemble", "eval", "clip"}}


def test_registered_command_names():
    root = typer.main.get_command(app)
    assert set(root.commands) == TOP_LEVEL
    for group, names in GROUPS.items():
        assert set(root.commands[group].commands) == names, group
    # each name runs the function its module defines (a swapped registration would pass a name check)
    for name, function in (("train", train.train_command), ("eval", evaluate.eval_command),
                           ("export", export.export_command), ("build", export.build_command),
                           ("batch", batch.batch_command)):
        assert inspect.unwrap(root.commands[name].callback) is inspect.unwrap(function), name


def test_train_takes_a_recipe_file():
    root = typer.main.get_command(app)
    options = {name for param in root.commands["train"].params for name in param.opts}
    assert {"--recipe", "--data", "--max-minutes", "--imgsz", "--set"} <= options


def test_unknown_command_is_refused():
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2 and "No such command 'trian'" in result.output
