"""`edgesewer data synth`: writes the set, prints per-class counts; bad input is a one-line error."""

import csv
import re

from typer.testing import CliRunner

from edgesewer.cli import app
from edgesewer.data.synth import default_synthetic_dir
from edgesewer.data.synth import writer as synth_writer

runner = CliRunner()


def test_synth_command_writes_and_prints_counts(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--images", "30", "--videos", "0",
                                 "--crack-images", "2", "--size", "96x80", "--seed", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    with (out / "sewerml" / "SewerML_Train.csv").open() as fh:
        train = list(csv.DictReader(fh))
    with (out / "sewerml" / "SewerML_Val.csv").open() as fh:
        val = list(csv.DictReader(fh))
    assert len(train) + len(val) == 30
    text = result.output
    for code in ("FS", "OS", "normal", "images"):
        assert code in text
    # The FS row of the table: code, meaning, train, val, total, as counted in the CSVs.
    fs = re.search(r"FS\s*│\s*displaced joint\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)", text)
    assert fs, text
    n_train, n_val = sum(int(r["FS"]) for r in train), sum(int(r["FS"]) for r in val)
    assert tuple(int(g) for g in fs.groups()) == (n_train, n_val, n_train + n_val)
    assert "SewerML_Train.csv" in text and str(out / "crack") in text


def test_bad_size_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--size", "320by256"])
    assert result.exit_code == 1
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: bad size '320by256': expected WIDTHxHEIGHT, e.g. 320x256"]
    assert not (tmp_path / "s").exists()


def test_default_synthetic_dir_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEWER_SYNTH_DIR", str(tmp_path / "default"))
    monkeypatch.setattr(synth_writer, "DEFAULT_SET", {"images": 4, "videos": 0, "crack_images": 2, "seed": 0})
    assert default_synthetic_dir(create=False) == tmp_path / "default"
    assert not (tmp_path / "default").exists()
    root = default_synthetic_dir(progress=False)
    assert (root / "synth.json").is_file() and len(list((root / "sewerml" / "images").glob("*.png"))) == 4
    stamp = (root / "synth.json").stat().st_mtime_ns
    assert default_synthetic_dir(progress=False) == root and (root / "synth.json").stat().st_mtime_ns == stamp
