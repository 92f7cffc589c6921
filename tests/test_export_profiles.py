"""Target profiles (export/*.yaml), the sidecar helpers, Jetson detection and the accuracy-report arithmetic."""

from __future__ import annotations

import dataclasses

import pytest

from edgesewer.errors import DataError, ExportError
from edgesewer.export.accuracy import AccuracyRow, add_deltas, refuse_random
from edgesewer.export.device_info import jetpack_for_l4t, jetson_info, parse_l4t
from edgesewer.export.metadata import model_file_for, read_sidecar, sidecar_path_for, write_json_atomic
from edgesewer.export.pipeline import artifact_precisions
from edgesewer.export.profiles import REPO_PROFILE_DIR, available_profiles, load_profile

SHIPPED = ["dgpu", "jetson-agx-orin", "jetson-orin-nano", "jetson-xavier-jp5", "ort-cpu"]


def test_every_shipped_profile_loads():
    assert set(SHIPPED) <= set(available_profiles())
    profiles = {name: load_profile(name) for name in SHIPPED}
    assert {n: (p.target, p.opset, p.tensorrt) for n, p in profiles.items()} == {
        "dgpu": ("tensorrt", 17, "10.x"),
        "jetson-agx-orin": ("tensorrt", 17, "10.3"),
        "jetson-orin-nano": ("tensorrt", 17, "10.3"),
        "jetson-xavier-jp5": ("tensorrt", 16, "8.5"),
        "ort-cpu": ("ort-cpu", 17, None),
    }
    jp5 = profiles["jetson-xavier-jp5"]
    assert jp5.strongly_typed == "false" and jp5.int8.weight_qdq_pair and jp5.jetson["compute_capability"] == "7.2"
    assert profiles["jetson-orin-nano"].batch.as_dict() == {"min": 1, "opt": 1, "max": 4}
    by_path = load_profile(REPO_PROFILE_DIR / "jetson-orin-nano.yaml")
    assert dataclasses.replace(by_path, source="") == dataclasses.replace(profiles["jetson-orin-nano"], source="")


def test_opset_limits_per_profile():
    jp5 = load_profile("jetson-xavier-jp5")
    assert jp5.check_opset(16) == 16 and jp5.check_opset(13) == 13
    with pytest.raises(ExportError, match=r"opset 17 cannot be parsed by target profile jetson-xavier-jp5 "
                                          r"\(TensorRT 8.5\): it accepts opset 13-16; use --opset 16"):
        jp5.check_opset(17)
    with pytest.raises(ExportError, match="opset 12 is too old"):
        load_profile("dgpu").check_opset(12)


@pytest.mark.parametrize(("text", "message"), [
    ("target: tensorrt\nopsett: 17\n", "unknown key 'opsett'"),
    ("target: gpu\n", "target must be tensorrt or ort-cpu, got 'gpu'"),
    ("target: tensorrt\nbatch: {min: 4, opt: 1, max: 8}\n", "batch needs 1 <= min <= opt <= max"),
    ("target: tensorrt\nint8: {method: kl}\n", "int8.method must be one of entropy, percentile, minmax"),
    ("target: tensorrt\nopset: 18\nmax_opset: 17\n", "opset 18 outside 13..max_opset 17"),
    ("- a\n- b\n", "a target profile is a YAML mapping"),
    ("target: [unclosed\n", "cannot read target profile"),
])
def test_bad_profiles_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_precisions_written_per_target():
    assert artifact_precisions("fp32", "tensorrt") == ["fp32"]
    assert artifact_precisions("fp16", "tensorrt") == ["fp32", "fp16"]
    assert artifact_precisions("int8", "tensorrt") == ["fp32", "int8"]
    assert artifact_precisions("int8", "ort-cpu") == ["fp32", "int8", "int8-cpu"]
    assert artifact_precisions("int8-cpu", "ort-cpu") == ["fp32", "int8-cpu"]
    with pytest.raises(ExportError, match="--precision must be one of"):
        artifact_precisions("bf16", "tensorrt")


def test_sidecar_paths_and_reading(tmp_path):
    assert sidecar_path_for(tmp_path / "m.int8.onnx") == tmp_path / "m.int8.json"
    assert sidecar_path_for(tmp_path / "m.int8.engine") == tmp_path / "m.int8.engine.json"
    assert model_file_for(tmp_path / "m.int8.engine.json") == tmp_path / "m.int8.engine"
    assert model_file_for(tmp_path / "m.fp16.json") == tmp_path / "m.fp16.onnx"
    with pytest.raises(DataError, match="sidecar JSON not found"):
        read_sidecar(tmp_path / "m.fp32.onnx")
    write_json_atomic(tmp_path / "m.fp32.json", {"format_version": 1, "model": "m"})
    assert (tmp_path / "m.fp32.json").stat().st_mode & 0o777 == 0o644
    with pytest.raises(DataError, match="missing keys edgesewer_version, created"):
        read_sidecar(tmp_path / "m.fp32.onnx")
    (tmp_path / "m.fp32.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_sidecar(tmp_path / "m.fp32.json")


def test_jetson_release_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr("edgesewer.export.device_info._jetpack_from_dpkg", lambda: None)
    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"
    assert parse_l4t(text) == "36.4.3"
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == "35.4.1"
    assert (jetpack_for_l4t("36.4.3"), jetpack_for_l4t("36.4.0"), jetpack_for_l4t("35.4.1")) == ("6.2", "6.1", "5.1.2")
    assert jetpack_for_l4t("99.1") is None
    release, model = tmp_path / "nv_tegra_release", tmp_path / "model"
    release.write_text(text)
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    info = jetson_info(release, model)
    assert info == {"l4t": "36.4.3", "jetpack": "6.2", "module": "NVIDIA Jetson Orin Nano Developer Kit"}
    assert jetson_info(tmp_path / "absent", model) is None


def test_accuracy_deltas_in_points_and_random_refusal():
    rows = [AccuracyRow("fp32", "a", {"F2_CIW": 0.5512, "F1_Normal": 0.9, "mAP": 0.6}, None),
            AccuracyRow("fp16", "b", {"F2_CIW": 0.5500, "F1_Normal": 0.9, "mAP": 0.61}, None),
            AccuracyRow("int8", "c", {"F2_CIW": 0.5400, "F1_Normal": 0.88, "mAP": 0.59}, 512)]
    add_deltas(rows, "classify")
    assert rows[0].deltas == {"F2_CIW": 0.0, "F1_Normal": 0.0, "mAP": 0.0}
    assert rows[1].deltas["F2_CIW"] == pytest.approx(-0.12) and rows[1].deltas["mAP"] == pytest.approx(1.0)
    assert rows[2].deltas["F2_CIW"] == pytest.approx(-1.12) and rows[2].deltas["F1_Normal"] == pytest.approx(-2.0)
    seg = [AccuracyRow("fp32", "a", {"ODS": 0.7, "OIS": 0.72, "AUPRC": 0.6, "IoU": 0.5, "region_F1": 0.8}, None),
           AccuracyRow("int8", "b", {"ODS": 0.69, "OIS": 0.72, "AUPRC": 0.6, "IoU": 0.52, "region_F1": 0.8}, 64)]
    add_deltas(seg, "segment")
    assert seg[1].deltas["ODS"] == pytest.approx(-1.0) and seg[1].deltas["IoU"] == pytest.approx(2.0)
    with pytest.raises(ExportError, match="exported with --weights random"):
        refuse_random({"random_weights": True}, "x.onnx")
    refuse_random({"random_weights": False}, "x.onnx")
