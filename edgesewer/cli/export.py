"""`edgesewer export` (model -> deployable artifacts) and `edgesewer build` (artifact -> TensorRT engine).

Thin commands: options in, `edgesewer.export.pipeline.run_export` / `tensorrt_build.build_from_artifact`
do the work. Heavy imports (torch, onnx) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._errors import one_line_errors
from edgesewer.cli._trust import TrustCheckpointOpt, checkpoint_trust


@one_line_errors
def export_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, e.g. vit-t-dino, ma-q2l-r101, scnet.")],
    precision: Annotated[Optional[str], typer.Option(
        help="fp32 | fp16 | int8 (Q/DQ; with --target ort-cpu also the CPU-fast int8-cpu) | int8-fp16 (Q/DQ in an "
             "FP16 graph, for strongly typed TensorRT 10.12+/11) | int8-cpu. "
             "Default: the target profile's.")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="Checkpoint (default: newest runs/<model>/*/best.pt), or 'random' for a speed-only export.")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="tensorrt | ort-cpu (default: tensorrt when TensorRT imports, else ort-cpu).")] = None,
    calib_data: Annotated[Optional[Path], typer.Option(
        help="Sewer-ML-format folder (a crack set for scnet) for calibration, parity and accuracy. "
             "Default: the synthetic set.")] = None,
    calib_images: Annotated[Optional[int], typer.Option(help="INT8 calibration images (default 512).")] = None,
    calib_method: Annotated[Optional[str], typer.Option(help="entropy | percentile | minmax.")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Largest batch the engine takes (profile max).")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Input side in pixels (default: the model's).")] = None,
    frames: Annotated[Optional[int], typer.Option(
        help="Frame-stack video models (video-swin3d-b): frames per input (default: the weights', 32).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default 17; 16 for JetPack 5).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/export/<model>/).")] = None,
    profile: Annotated[Optional[str], typer.Option(
        help="Target profile: a name or export/<target>.yaml (jetson-orin-nano, jetson-agx-orin, "
             "jetson-xavier-jp5, dgpu, ort-cpu).")] = None,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim.")] = True,
    external_data: Annotated[bool, typer.Option(
        "--external-data", help="Keep the weights in <file>.onnx.data beside each ONNX (automatic for models "
                                "over protobuf's 2 GB limit: NFNet-F6, EfficientNet-L2).")] = False,
    accuracy: Annotated[Optional[bool], typer.Option(
        "--accuracy/--no-accuracy", help="Accuracy per precision on the labelled set (default: on for trained weights).")
    ] = None,
    max_fp16_loss: Annotated[float, typer.Option(
        help="Refuse the fp16 artifact when it loses more than this many points of the main metric "
             "(F2_CIW, ODS, mAP) against fp32 on the labelled set.")] = 0.3,
    max_int8_loss: Annotated[float, typer.Option(help="The same limit for int8 and int8-cpu.")] = 1.5,
    accept_accuracy_loss: Annotated[bool, typer.Option(
        "--accept-accuracy-loss", help="Write artifacts over those limits anyway; the sidecar records the loss.")
    ] = False,
    classes: Annotated[Optional[Path], typer.Option(
        help="Zero-shot models (sfr-net): class text file (CODE.name / CODE.text lines) to bake in; "
             "default: the trained classes.")] = None,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """Export a model to ONNX (fp32/fp16/int8) with a sidecar, and a TensorRT engine when TensorRT is here."""
    from rich.console import Console

    from edgesewer.export.pipeline import ExportOptions, run_export
    from edgesewer.export.summary import summary_table

    console = Console()
    options = ExportOptions(model=model, precision=precision, weights=weights, target=target, profile=profile,
                            calib_data=calib_data, calib_images=calib_images, calib_method=calib_method, batch=batch,
                            imgsz=imgsz, frames=frames, opset=opset, out=out, simplify=simplify, accuracy=accuracy,
                            external_data=True if external_data else None,
                            classes=classes, max_fp16_loss=max_fp16_loss, max_int8_loss=max_int8_loss,
                            accept_accuracy_loss=accept_accuracy_loss)
    with checkpoint_trust(trust_checkpoint):
        result = run_export(options, log=lambda line: console.print(line, highlight=False))
    console.print(summary_table(result))
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print("next:")
    for command in result.followups:
        console.print(f"  {command}", highlight=False, soft_wrap=True)


@one_line_errors
def build_command(
    artifact: Annotated[Path, typer.Argument(help="An exported .onnx artifact (or its .json sidecar).")],
    workspace: Annotated[Optional[float], typer.Option(help="Builder workspace limit in GiB.")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Largest batch of the optimisation profile.")] = None,
) -> None:
    """Build a TensorRT engine from an exported artifact, on the device that will run it."""
    from edgesewer.export.metadata import read_sidecar
    from edgesewer.export.tensorrt_build import build_from_artifact

    built = build_from_artifact(artifact, workspace_gib=workspace, max_batch=max_batch)
    flag = "--seg" if read_sidecar(built.sidecar_path)["task"] == "segment" else "--model"
    info = built.tensorrt
    typer.echo(f"engine: {built.engine_path}")
    typer.echo(f"sidecar: {built.sidecar_path}")
    typer.echo(f"TensorRT {info['version']} on {info['gpu']} (sm {info['compute_capability']}), "
               f"{'strongly typed' if built.plan.strongly_typed else 'flags: ' + (','.join(built.plan.builder_flags) or 'none')}, "
               f"batch {info['profile']['min']}/{info['profile']['opt']}/{info['profile']['max']}")
    for note in built.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"next:\n  edgesewer run {flag} {built.engine_path} --source 0 --backend tensorrt")
