"""The CLI surface: every documented command is listed."""

from typer.testing import CliRunner

from edgesewer.cli import app

runner = CliRunner()


def test_help_lists_all_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "train", "eval", "export", "run", "benchmark", "demo", "models"):
        assert name in result.output
