"""The CLI surface: every documented command is listed; unbuilt ones say so in one line."""

from typer.testing import CliRunner

from edgesewer.cli import app
from edgesewer.cli._pending import PENDING

runner = CliRunner()


def test_help_lists_all_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "train", "eval", "export", "run", "benchmark", "demo", "models"):
        assert name in result.output


def test_pending_commands_name_their_issue():
    for name, subject in PENDING.items():
        result = runner.invoke(app, [name, "--whatever", "x"])
        assert result.exit_code == 1, name
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "not built yet" in lines[0] and subject[:30] in lines[0]
