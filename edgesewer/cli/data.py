"""`edgesewer data ...`: dataset tools (synthetic generator, checks).

    edgesewer data synth --out data/synth                      # 2000 images, 2 videos, 200 crack patches
    edgesewer data synth --out /tmp/s --images 200 --videos 0 --size 224x224
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._errors import one_line_errors

app = typer.Typer(help="Dataset tools: generate the synthetic sewer set, check real Sewer-ML folders.",
                  no_args_is_help=True)


@app.command("synth")
@one_line_errors
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (an earlier synthetic set there is replaced).")],
    images: Annotated[int, typer.Option(help="Sewer-ML-format images (train + val).")] = 2000,
    videos: Annotated[int, typer.Option(help="Inspection videos with per-frame ground truth.")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="Everything is deterministic for a seed.")] = 0,
    size: Annotated[str, typer.Option(help="Image and video size, WIDTHxHEIGHT.")] = "320x256",
    val_fraction: Annotated[float, typer.Option(help="Share of the images in SewerML_Val.csv.")] = 0.2,
    crack_images: Annotated[int, typer.Option(help="Close-up crack patches (DeepCrack layout).")] = 200,
    crack_size: Annotated[str, typer.Option(help="Crack patch size, WIDTHxHEIGHT.")] = "256x256",
    video_seconds: Annotated[float, typer.Option(help="Length of each video.")] = 20.0,
    fps: Annotated[int, typer.Option(help="Video frame rate.")] = 25,
    workers: Annotated[Optional[int], typer.Option(help="Render processes (default: one per core, at most 4).")] = None,
) -> None:
    """Generate the synthetic sewer set: Sewer-ML CSVs + PNGs, crack patches, inspection videos."""
    from rich.console import Console

    from edgesewer.data.synth import generate, parse_size
    from edgesewer.data.synth.writer import available_workers

    summary = generate(out, images=images, videos=videos, seed=seed, size=parse_size(size),
                       val_fraction=val_fraction, crack_images=crack_images, crack_size=parse_size(crack_size),
                       video_seconds=video_seconds, fps=fps, workers=workers or available_workers())
    console = Console()
    if summary.counts:
        console.print(counts_table(summary.counts))
    # Plain echo for paths: rich would wrap long ones in narrow terminals.
    for label, path in (("train csv", summary.train_csv), ("val csv", summary.val_csv), ("images", summary.images_dir),
                        ("crack set", summary.crack_dir)):
        if path is not None:
            typer.echo(f"{label:>10}: {path}")
    for video in summary.videos:
        typer.echo(f"{'video':>10}: {video} (+ {video.with_suffix('.json').name}, {video.stem}_masks/)")
    typer.echo(f"done in {summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)")


def counts_table(counts: dict[str, dict[str, int]]):
    """Rich table: one row per class (+ images, normal), one column per split, and the total."""
    from rich.table import Table

    from edgesewer.taxonomy import SEWER_CODES, SEWER_DESCRIPTIONS

    splits = list(counts)
    table = Table(title="synthetic Sewer-ML labels")
    table.add_column("code")
    table.add_column("meaning")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for key in ("images", "normal", *SEWER_CODES):
        values = [counts[s].get(key, 0) for s in splits]
        table.add_row(key if key in SEWER_CODES else "", SEWER_DESCRIPTIONS.get(key, key),
                      *(str(v) for v in values), str(sum(values)))
    return table
