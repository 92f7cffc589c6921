"""The `edgesewer` command: composition only; each command lives in its own module.

Command modules import heavy libraries (torch, onnx) inside the command functions so that
`edgesewer --help` and the runtime commands start fast on a torch-free Jetson install.
"""

from __future__ import annotations

import typer

from edgesewer.cli import batch as batch_cli
from edgesewer.cli import benchmark as benchmark_cli
from edgesewer.cli import data as data_cli
from edgesewer.cli import demo as demo_cli
from edgesewer.cli import evaluate as eval_cli
from edgesewer.cli import export as export_cli
from edgesewer.cli import models as models_cli
from edgesewer.cli import run as run_cli
from edgesewer.cli import train as train_cli
from edgesewer.cli import video as video_cli

app = typer.Typer(
    name="edgesewer",
    help="Sewer-pipe defect models on the edge: data, train, eval, export, run, batch, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_cli.app, name="data")
app.add_typer(video_cli.app, name="video")
app.command("train")(train_cli.train_command)
app.command("pretrain")(train_cli.pretrain_command)
app.command("eval")(eval_cli.eval_command)
app.command("demo")(demo_cli.demo_command)
app.command("models")(models_cli.models_command)
app.command("export")(export_cli.export_command)
app.command("build")(export_cli.build_command)
app.command("run")(run_cli.run_command)
app.command("batch")(batch_cli.batch_command)
app.command("benchmark")(benchmark_cli.benchmark_command)


def main() -> None:
    app()
