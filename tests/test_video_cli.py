"""`edgesewer video ...` commands: folds, eval, ensemble and cut-synth end to end; one-line errors."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgesewer.cli.video import app

runner = CliRunner()


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_eval_prints_the_official_map(tmp_path):
    gt = _write(tmp_path / "test_gt.json", {"a.mp4": [0], "b.mp4": [1], "c.mp4": [1, 2]})
    scores = {"a.mp4": [0.95] + [0.5] * 16, "b.mp4": [0.1, 0.9] + [0.0] * 15, "c.mp4": [0.2, 0.3, 0.8] + [0.0] * 14}
    results = _write(tmp_path / "test_result.json", scores)
    out = runner.invoke(app, ["eval", "--results", str(results), "--gt", str(gt), "--json", str(tmp_path / "m.json")])
    assert out.exit_code == 0, out.output
    # ZC: AP 1. CJ: a (0.5, neg), b (0.9, pos), c (0.3, pos) -> ranks 1, 3 -> (1 + 2/3) / 2 = 5/6.
    # CK: c ranks first among 0.5 (a), 0.8 (c), 0.0 (b) -> AP 1; 14 classes without positives -> 0.
    expected = (1 + 5 / 6 + 1) / 17
    assert f"mAP {100 * expected:.3f}" in out.output
    # After the rule video a (p(ZC) 0.95) has CJ 0: CJ ranks b, c first -> AP 1.
    assert f"mAP after normal rule {100 * 3 / 17:.3f}" in out.output
    assert json.loads((tmp_path / "m.json").read_text())["per_class"]["CJ"]["AP"] == pytest.approx(5 / 6)


def test_eval_errors_are_one_line(tmp_path):
    gt = _write(tmp_path / "gt.json", {"a.mp4": [0], "b.mp4": [1]})
    results = _write(tmp_path / "res.json", {"a.mp4": [0.1] * 17})
    out = runner.invoke(app, ["eval", "--results", str(results), "--gt", str(gt)])
    assert out.exit_code == 1
    assert out.output.strip().count("\n") == 0 and "error:" in out.output and "no scores for 1 of the 2 videos" in out.output


def test_folds_and_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    labels = {f"v{i:02d}.mp4": sorted({int(rng.integers(0, 17)), int(rng.integers(1, 4))}) for i in range(40)}
    path = _write(tmp_path / "train.json", labels)
    out = runner.invoke(app, ["folds", "--labels", str(path), "--out", str(tmp_path / "folds.json"), "--folds", "4"])
    assert out.exit_code == 0, out.output
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    assert sorted(folds) == sorted(labels) and set(folds.values()) == {0, 1, 2, 3}

    a = _write(tmp_path / "a.json", {"x.mp4": [0.2] * 17, "y.mp4": [1.0] * 17})
    b = _write(tmp_path / "b.json", {"x.mp4": [0.6] * 17, "y.mp4": [0.0] * 17})
    out = runner.invoke(app, ["ensemble", str(a), str(b), "--weights", "3,1", "--out", str(tmp_path / "e.json")])
    assert out.exit_code == 0, out.output
    blended = json.loads((tmp_path / "e.json").read_text())
    assert blended["x.mp4"][0] == pytest.approx(0.3) and blended["y.mp4"][5] == pytest.approx(0.75)


def test_cut_synth(tmp_path):
    videos = tmp_path / "synth" / "videos"
    videos.mkdir(parents=True)
    writer = cv2.VideoWriter(str(videos / "inspection_000.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
    for i in range(50):
        writer.write(np.full((32, 32, 3), 5 * i, dtype=np.uint8))
    writer.release()
    frames = [["OB"] if 5 <= i < 15 else [] for i in range(50)]
    _write(videos / "inspection_000.json", {"fps": 10, "n_frames": 50, "frames": frames, "segments": []})
    out = runner.invoke(app, ["cut-synth", "--data", str(tmp_path / "synth"), "--out", str(tmp_path / "clips"),
                              "--min-s", "2", "--max-s", "2"])
    assert out.exit_code == 0, out.output
    assert "2 clips, 1 normal" in out.output  # [0, 20) has OB, [20, 40) is normal, the 10-frame rest is dropped
    assert json.loads((tmp_path / "clips" / "labels.json").read_text()) == {
        "clips/inspection_000_c000.mp4": [1], "clips/inspection_000_c001.mp4": []}


def test_frames_command(tmp_path):
    videos = tmp_path / "synth" / "videos"
    videos.mkdir(parents=True)
    for k in range(2):
        writer = cv2.VideoWriter(str(videos / f"inspection_00{k}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
        for i in range(10):
            writer.write(np.full((32, 32, 3), 20 * i, dtype=np.uint8))
        writer.release()
        frames = [["OB"] if i >= 5 else [] for i in range(10)]
        _write(videos / f"inspection_00{k}.json", {"fps": 10, "n_frames": 10, "frames": frames})
    out = runner.invoke(app, ["frames", "--data", str(tmp_path / "synth"), "--out", str(tmp_path / "f"),
                              "--stride", "5"])
    assert out.exit_code == 0, out.output
    assert "2 train frames (1 videos), 2 val frames (inspection_001)" in out.output
    assert (tmp_path / "f" / "SewerML_Val.csv").read_text().splitlines()[2].startswith("inspection_001_f000005.png")
    bad = runner.invoke(app, ["frames", "--data", str(tmp_path / "synth"), "--out", str(tmp_path / "g"),
                              "--val-videos", "2"])
    assert bad.exit_code != 0 and "--val-videos must leave at least one" in bad.output


def test_frames_refuses_a_sewerml_folder_it_did_not_write(tmp_path):
    videos = tmp_path / "synth" / "videos"
    videos.mkdir(parents=True)
    for k in range(2):
        writer = cv2.VideoWriter(str(videos / f"inspection_00{k}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
        for i in range(4):
            writer.write(np.full((32, 32, 3), 40 * i, dtype=np.uint8))
        writer.release()
        _write(videos / f"inspection_00{k}.json", {"fps": 10, "n_frames": 4, "frames": [["OB"]] * 4})
    theirs = tmp_path / "sewerml"  # somebody's labelled set: its CSV must survive
    theirs.mkdir()
    (theirs / "SewerML_Train.csv").write_text("Filename,VA\nx.png,1\n")
    before = (theirs / "SewerML_Train.csv").read_bytes()
    args = ["frames", "--data", str(tmp_path / "synth"), "--stride", "2"]
    bad = runner.invoke(app, [*args, "--out", str(theirs)])
    assert bad.exit_code == 1 and "SewerML_Train.csv not written by `edgesewer video frames`" in bad.output
    assert (theirs / "SewerML_Train.csv").read_bytes() == before and not (theirs / "images").exists()
    # the synthetic set's own folder is not ours either (its CSVs are the synth writer's)
    (tmp_path / "synth" / "SewerML_Val.csv").write_text("Filename\n")
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "synth")]).exit_code == 1
    # our own folder is rewritten, stale frames of the earlier run removed
    ours = tmp_path / "f"
    assert runner.invoke(app, [*args, "--out", str(ours)]).exit_code == 0
    (ours / "images" / "stale.png").write_bytes(b"x")
    again = runner.invoke(app, [*args, "--out", str(ours), "--stride", "4"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (ours / "images").iterdir()) == ["inspection_000_f000000.png",
                                                                    "inspection_001_f000000.png"]
