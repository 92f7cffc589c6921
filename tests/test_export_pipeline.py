"""`edgesewer export` / `edgesewer build` end to end on vit-t at 64 px: artifacts, sidecars, errors.

The CLI tests register the two commands on a local typer app (the root app composes them the
same way), so they run whether or not the root CLI has switched them on yet.
"""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

import edgesewer.export.quantize as quantize_module
from edgesewer.cli.export import build_command, export_command
from edgesewer.errors import ExportError, ModelNotFound
from edgesewer.export.metadata import REQUIRED_KEYS, read_sidecar
from edgesewer.export.profiles import REPO_PROFILE_DIR
from edgesewer.export.pipeline import ExportOptions, run_export
from edgesewer.export.summary import summary_rows
from edgesewer.train.checkpoint import save_checkpoint
from test_export_onnx import make_sewerml, make_vit
from test_export_tensorrt import ORIN, fake_tensorrt, onnx_artifact

app = typer.Typer()
app.command("export")(export_command)
app.command("build")(build_command)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEWER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_sewerml(tmp_path_factory.mktemp("pipeline") / "sewerml", n_train=24, n_val=16)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def cpu_dynamic_profile(tmp_path):
    """The shipped ort-cpu profile times both CPU variants (auto); a fixed mode keeps a test deterministic."""
    profile = tmp_path / "cpu-dynamic.yaml"
    profile.write_text((REPO_PROFILE_DIR / "ort-cpu.yaml").read_text().replace("cpu_int8: auto", "cpu_int8: dynamic"))
    return profile


def test_cpu_int8_export_writes_the_artifact_contract(tmp_path, data):
    profile = cpu_dynamic_profile(tmp_path)
    out = tmp_path / "out"
    result = run_export(ExportOptions(model="vit-t", weights="random", precision="int8", profile=str(profile),
                                      imgsz=64, calib_data=data, calib_images=12, out=out, progress=False),
                        log=lambda s: None)
    assert sorted(p.name for p in out.iterdir()) == [
        "vit-t.fp32.json", "vit-t.fp32.onnx", "vit-t.int8-cpu.json", "vit-t.int8-cpu.onnx",
        "vit-t.int8.json", "vit-t.int8.onnx"]
    assert not list(tmp_path.glob(".out.staging-*"))
    fp32, int8, cpu = (read_sidecar(out / f"vit-t.{p}.onnx") for p in ("fp32", "int8", "int8-cpu"))
    for sidecar in (fp32, int8, cpu):
        assert set(REQUIRED_KEYS) <= set(sidecar)
        assert sidecar["model"] == "vit-t" and sidecar["task"] == "classify" and sidecar["opset"] == 17
        assert sidecar["onnx_sha256"] == fp32["file_sha256"]  # every variant names its fp32 source
        assert sidecar["random_weights"] is True and sidecar["weights"] == "random"
        assert sidecar["inputs"] == [{"name": "input", "shape": [-1, 3, 64, 64], "dtype": "float32"}]
        assert sidecar["outputs"] == [{"name": "logits", "shape": [-1, 17], "dtype": "float32", "kind": "logits"}]
        assert sidecar["model_cfg"]["input_size"] == 64 and len(sidecar["model_cfg"]["classes"]) == 17
        assert sidecar["accuracy"] is None  # random weights: no accuracy report
        assert sidecar["tensorrt"] is None and sidecar["parity"]["images"] == 24  # all Train images (fewer than 32)
    assert (fp32["target"], int8["target"], cpu["target"]) == ("ort-cpu", "ort-cpu", "ort-cpu")
    assert fp32["calibration"] is None
    assert int8["calibration"] == {"images": 12, "method": "entropy", "data": str(data), "skipped": 0}
    assert fp32["parity"]["max_abs_diff"] < 1e-3 and fp32["parity"]["decision_agreement"] == 1.0
    assert cpu["quantization"]["mode"] == "dynamic" and cpu["calibration"] is None  # ranges measured at run time
    rows = {r["precision"]: r for r in summary_rows(result)}
    assert rows["int8"]["calibration_images"] == 12 and rows["fp32"]["size_mb"] > 3 * rows["int8"]["size_mb"]
    assert result.followups[0] == f"edgesewer run --model {out / 'vit-t.int8-cpu.onnx'} --source 0 --backend ort"
    assert result.followups[-1] == (f"edgesewer benchmark --models vit-t --precisions fp32,int8,int8-cpu --backend ort "
                                    f"--data {data} --weights random")
    # The runtime helper reads these artifacts as they are.
    artifact = pytest.importorskip("edgesewer.runtime.artifact")
    for name in ("fp32", "int8", "int8-cpu"):
        assert artifact.load_artifact(out / f"vit-t.{name}.onnx").precision == name


def test_tensorrt_export_builds_the_engine_with_the_same_builder(tmp_path, data):
    out = tmp_path / "out"
    trt = fake_tensorrt("10.3")
    result = run_export(ExportOptions(model="vit-t", weights="random", precision="fp16", imgsz=64, calib_data=data, parity_images=8,
                                      profile="jetson-orin-nano", out=out, progress=False, trt=trt,
                                      gpu=("Orin", "8.7")), log=lambda s: None)
    assert result.engine == out / "vit-t.fp16.engine"
    engine_sidecar = json.loads((out / "vit-t.fp16.engine.json").read_text())
    assert engine_sidecar["tensorrt"]["version"] == "10.3.0.30" and engine_sidecar["precision"] == "fp16"
    assert engine_sidecar["tensorrt"]["profile"] == {"min": 1, "opt": 1, "max": 4}  # the Orin Nano profile
    assert ("set_flag", 10) in trt.calls  # FP16 on TensorRT 10.x weak typing
    assert ("set_shape", "input", (1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 64, 64)) in trt.calls
    assert result.followups[0].startswith(f"edgesewer run --model {out / 'vit-t.fp16.engine'}")


def test_tensorrt_target_without_tensorrt_writes_onnx_and_says_how_to_build(tmp_path, data, monkeypatch):
    monkeypatch.setattr("edgesewer.export.pipeline.tensorrt_available", lambda: False)
    out = tmp_path / "out"
    result = run_export(ExportOptions(model="vit-t", weights="random", precision="fp32", target="tensorrt", imgsz=64,
                                      calib_data=data, parity_images=8, out=out, progress=False), log=lambda s: None)
    assert result.engine is None and read_sidecar(out / "vit-t.fp32.onnx")["target"] == "tensorrt"
    assert any("TensorRT is not installed here" in n for n in result.notes)
    assert result.followups[0] == f"edgesewer build {out / 'vit-t.fp32.onnx'}   # on the device"
    # `edgesewer build` on a machine without TensorRT says so in one line.
    line = one_line_error(runner.invoke(app, ["build", str(out / "vit-t.fp32.onnx")]))
    assert "TensorRT is not installed here" in line


def test_failed_export_leaves_nothing_behind(tmp_path, data, monkeypatch):
    def half_written_then_fail(src, dst, *args, **kwargs):
        with open(dst, "wb") as fh:
            fh.write(b"half an onnx file")
        raise ExportError("quantiser crashed")

    monkeypatch.setattr(quantize_module, "quantize_qdq", half_written_then_fail)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="quantiser crashed"):
        run_export(ExportOptions(model="vit-t", weights="random", precision="int8", target="ort-cpu", imgsz=64,
                                 calib_data=data, calib_images=8, parity_images=8, out=out, progress=False),
                   log=lambda s: None)
    assert not out.exists()  # not even the fp32 artifact that had been finished
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]  # and no staging folder


def test_accuracy_report_for_trained_weights(tmp_path, data):
    model, cfg = make_vit()
    ckpt = save_checkpoint(tmp_path / "runs" / "vit-t" / "run1" / "best.pt",
                           {"model": model.state_dict(), "model_cfg": cfg.to_dict(), "epoch": 3,
                            "model_kwargs": {"img_size": 64}})
    out = tmp_path / "out"
    run_export(ExportOptions(model="vit-t", precision="fp16", target="ort-cpu", calib_data=data, parity_images=8,
                             out=out, runs_dir=tmp_path / "runs", progress=False), log=lambda s: None)
    fp32, fp16 = read_sidecar(out / "vit-t.fp32.onnx"), read_sidecar(out / "vit-t.fp16.onnx")
    assert fp32["weights"] == str(ckpt) and fp32["random_weights"] is False
    assert fp32["model_cfg"]["input_size"] == 64  # from the checkpoint, no --imgsz needed
    for sidecar in (fp32, fp16):
        acc = sidecar["accuracy"]
        assert acc["images"] == 16 and acc["split"] == "Val" and 0.0 <= acc["F2_CIW"] <= 1.0
    assert fp32["accuracy"]["delta_to_fp32_points"] == {"F2_CIW": 0.0, "F1_Normal": 0.0, "mAP": 0.0}
    assert fp16["accuracy"]["delta_to_fp32_points"]["mAP"] == pytest.approx(
        100 * (fp16["accuracy"]["mAP"] - fp32["accuracy"]["mAP"]))


def test_cli_export_prints_summary_and_followups(tmp_path, data):
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "--model", "vit-t", "--weights", "random", "--precision", "fp32",
                                 "--target", "ort-cpu", "--imgsz", "64", "--calib-data", str(data), "--out", str(out)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "parity check vs PyTorch" in result.output and "vit-t.fp32.onnx" in result.output
    assert f"edgesewer run --model {out / 'vit-t.fp32.onnx'} --source 0 --backend ort" in result.output


def test_cli_one_line_errors(tmp_path, data):
    (tmp_path / "empty").mkdir()
    common = ["export", "--model", "vit-t", "--weights", "random", "--imgsz", "64", "--out", str(tmp_path / "o")]
    line = one_line_error(runner.invoke(app, [*common, "--calib-data", str(tmp_path / "empty"), "--target", "ort-cpu"]))
    assert line == (f"error: {tmp_path / 'empty'}: not a Sewer-ML folder (no SewerML_Train.csv or SewerML_Val.csv); "
                    "make one with `edgesewer data synth --out DIR` (then use DIR/sewerml) or use the Sewer-ML download")
    line = one_line_error(runner.invoke(app, [*common, "--calib-data", str(data), "--opset", "17",
                                              "--profile", "jetson-xavier-jp5"]))
    assert line.startswith("error: opset 17 cannot be parsed by target profile jetson-xavier-jp5 (TensorRT 8.5)")
    line = one_line_error(runner.invoke(app, [*common, "--calib-data", str(data), "--profile", "jetson-nano"]))
    assert "unknown target profile 'jetson-nano'" in line and "jetson-orin-nano" in line
    scnet_ckpt = save_checkpoint(tmp_path / "scnet.pt", {"model": {}, "model_cfg": {"name": "scnet"}, "epoch": 0})
    line = one_line_error(runner.invoke(app, ["export", "--model", "vit-t", "--weights", str(scnet_ckpt),
                                              "--calib-data", str(data), "--target", "ort-cpu"]))
    assert line == f"error: {scnet_ckpt}: checkpoint is for model scnet, not vit-t"
    line = one_line_error(runner.invoke(app, [*common, "--calib-data", str(data), "--precision", "int8-cpu",
                                              "--target", "tensorrt"]))
    assert "int8-cpu is the ONNX Runtime CPU variant" in line
    line = one_line_error(runner.invoke(app, ["export", "--model", "vit-tt", "--weights", "random"]))
    assert "unknown model 'vit-tt'" in line and "vit-t" in line
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_names_the_train_command(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(runner.invoke(app, ["export", "--model", "vit-t", "--calib-data", str(data),
                                              "--target", "ort-cpu"]))
    assert line == ("error: no checkpoint for vit-t under runs/vit-t/*/best.pt; train one with "
                    "`edgesewer train vit-t --data DIR`, or pass --weights random for a speed-only export")


def test_checkpoint_that_does_not_fit_is_refused(tmp_path, data):
    torch.manual_seed(0)
    model, cfg = make_vit(imgsz=32)
    ckpt = save_checkpoint(tmp_path / "v.pt", {"model": model.state_dict(), "model_cfg": cfg.to_dict(), "epoch": 0})
    with pytest.raises(ModelNotFound, match="weights do not fit vit-t .*--imgsz 64 differs from its 32"):
        run_export(ExportOptions(model="vit-t", weights=str(ckpt), imgsz=64, target="ort-cpu", calib_data=data,
                                 out=tmp_path / "o", progress=False), log=lambda s: None)


def test_cli_build_with_a_tensorrt_standin(tmp_path, monkeypatch):
    artifact = onnx_artifact(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt("11.1"))
    monkeypatch.setattr("edgesewer.export.device_info.gpu_info", lambda: ORIN)
    monkeypatch.setattr("edgesewer.export.device_info.jetson_info", lambda: None)
    result = runner.invoke(app, ["build", str(artifact), "--workspace", "1", "--max-batch", "6"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"engine: {tmp_path / 'tiny.int8.engine'}",
        f"sidecar: {tmp_path / 'tiny.int8.engine.json'}",
        "TensorRT 11.1.0.106 on Orin (sm 8.7), strongly typed, batch 1/2/6",
        "note: profile jetson-orin-nano expects TensorRT 10.3, this device has 11.1.0.106",
        "note: tiny.int8.onnx: strongly typed, its unquantised layers run in FP32 (slower than the fp16 engine); "
        "export --precision int8-fp16 for an INT8 engine whose other layers are FP16",
        "next:",
        f"  edgesewer run --model {tmp_path / 'tiny.int8.engine'} --source 0 --backend tensorrt",
    ]


def test_ma_q2l_calibrates_with_percentile_unless_told_otherwise():
    import dataclasses

    from edgesewer.export.pipeline import model_calib_method
    from edgesewer.models import get_entry

    cfg = get_entry("ma-q2l-r101").cfg
    assert model_calib_method(cfg) == "percentile"
    saved_before = dataclasses.replace(cfg, extra={k: v for k, v in cfg.extra.items() if k != "calib_method"})
    assert model_calib_method(saved_before) == "percentile"  # a checkpoint's cfg from before the choice
    assert model_calib_method(get_entry("vit-t").cfg) is None  # the profile's method applies
