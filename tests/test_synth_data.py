"""Synthetic sewer set on disk: Sewer-ML layout and header, determinism, crack patches, videos."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesewer.data.synth import generate, parse_size, render_frame, render_sample
from edgesewer.data.synth.video import render_video
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES

SMALL = (96, 80)
HEADER = "Filename,WaterLevel,VA,RB,OB,PF,DE,FS,IS,RO,IN,AF,BE,FO,GR,PH,PB,OS,OP,OK,ND,Defect"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, images=60, videos=0, crack_images=6, seed=0, size=SMALL, progress=False)
    return out


def test_sewerml_layout_header_and_labels(small_set):
    sewer = small_set / "sewerml"
    for split in ("Train", "Val"):
        assert (sewer / f"SewerML_{split}.csv").read_text().splitlines()[0] == HEADER
    train, val = _rows(sewer / "SewerML_Train.csv"), _rows(sewer / "SewerML_Val.csv")
    assert (len(train), len(val)) == (48, 12)
    names = sorted(r["Filename"] for r in train + val)
    assert names == [f"{i:08d}.png" for i in range(1, 61)]  # unique across splits, 8 digits
    totals = np.zeros(17, int)
    for row in train + val:
        labels = [int(row[c]) for c in SEWER_CODES]
        assert set(labels) <= {0, 1}
        assert int(row["Defect"]) == int(any(labels))
        level = int(row["WaterLevel"])
        assert int(row["VA"]) == int(level > 0)
        assert int(row["ND"]) == int(not any(labels) and level == 0)  # ND only on normal rows, never with VA
        totals += labels
    assert totals.min() >= 1  # every class appears
    assert any(int(r["Defect"]) for r in val)
    image = cv2.imread(str(sewer / "images" / names[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (SMALL[1], SMALL[0], 3) and image.dtype == np.uint8
    assert len(list((sewer / "images").glob("*.png"))) == 60
    manifest = json.loads((small_set / "synth.json").read_text())
    assert manifest["summary"]["counts"]["train"]["images"] == 48
    assert manifest["summary"]["counts"]["val"]["FS"] == sum(int(r["FS"]) for r in val)


def test_water_is_visible_at_the_invert():
    dry = render_frame((), seed=3, water_level=0).astype(float)
    wet = render_frame((), seed=3, water_level=30).astype(float)
    h, w = dry.shape[:2]
    invert = (slice(int(0.8 * h), h), slice(int(0.4 * w), int(0.6 * w)))
    crown = (slice(0, int(0.2 * h)), slice(int(0.4 * w), int(0.6 * w)))
    assert np.abs(wet - dry)[invert].mean() > 6 and np.abs(wet - dry)[crown].mean() < 2
    assert wet[invert].mean() < dry[invert].mean()  # murky water is darker than the lit wall


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(images=10, videos=0, crack_images=2, size=SMALL, progress=False)
    a, b, c = (generate(tmp_path / n, seed=s, **kw) for n, s in (("a", 4), ("b", 4), ("c", 5)))
    for rel in ("sewerml/SewerML_Train.csv", "sewerml/SewerML_Val.csv", "sewerml/images/00000007.png",
                "crack/train_img/00001.jpg", "crack/train_lab/00001.png"):
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes(), rel
    assert (a.out / "sewerml/SewerML_Train.csv").read_bytes() != (c.out / "sewerml/SewerML_Train.csv").read_bytes()
    assert (a.out / "sewerml/images/00000007.png").read_bytes() != (c.out / "sewerml/images/00000007.png").read_bytes()


def test_worker_processes_give_the_same_images(tmp_path):
    kw = dict(images=16, videos=0, crack_images=0, size=SMALL, seed=1, progress=False)
    one, two = generate(tmp_path / "one", workers=1, **kw), generate(tmp_path / "two", workers=2, **kw)
    for path in sorted((one.out / "sewerml/images").glob("*.png")):
        assert path.read_bytes() == (two.out / "sewerml/images" / path.name).read_bytes(), path.name


def test_worker_processes_give_the_same_videos(tmp_path):
    kw = dict(images=0, videos=2, crack_images=0, size=SMALL, seed=2, video_seconds=1.0, fps=10, progress=False)
    one, two = generate(tmp_path / "one", workers=1, **kw), generate(tmp_path / "two", workers=2, **kw)
    assert [p.name for p in one.videos] == [p.name for p in two.videos] == ["inspection_000.mp4", "inspection_001.mp4"]
    for video in one.videos:
        for suffix in (".mp4", ".json"):
            a, b = video.with_suffix(suffix), two.out / "videos" / video.with_suffix(suffix).name
            assert a.read_bytes() == b.read_bytes(), a.name
    assert one.videos[0].read_bytes() != one.videos[1].read_bytes()  # two different inspections


def test_crack_patches_have_binary_masks_under_dark_pixels(small_set):
    crack = small_set / "crack"
    for split, n in (("train", 5), ("test", 1)):
        images = sorted(p.stem for p in (crack / f"{split}_img").glob("*.jpg"))
        masks = sorted(p.stem for p in (crack / f"{split}_lab").glob("*.png"))
        assert images == masks and len(images) == n
    darker = []
    for mask_path in sorted((crack / "train_lab").glob("*.png")):
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.shape == (256, 256)
        assert set(np.unique(mask)) <= {0, 255}
        if mask.any():
            gray = cv2.imread(str(crack / "train_img" / f"{mask_path.stem}.jpg"), cv2.IMREAD_GRAYSCALE)
            darker.append(gray[mask > 0].mean() < 0.8 * gray[mask == 0].mean())
    assert darker and all(darker)


def test_video_frames_json_and_masks_agree(tmp_path):
    result = render_video(tmp_path, "inspection_000", seed=3, seconds=4.0, fps=10, size=SMALL,
                          code_order=["RB", "GR", "FS"])
    truth = json.loads(result.json.read_text())
    cap = cv2.VideoCapture(str(result.mp4))
    n_read = 0
    while cap.read()[0]:
        n_read += 1
    cap.release()
    assert truth["n_frames"] == n_read == len(truth["frames"]) == 40
    assert (truth["fps"], truth["width"], truth["height"], truth["codes"]) == (10, *SMALL, list(SEWER_CODES))
    rebuilt = [set() for _ in truth["frames"]]
    for seg in truth["segments"]:
        assert seg["start_frame"] <= seg["end_frame"]
        for i in range(seg["start_frame"], seg["end_frame"] + 1):
            rebuilt[i].add(seg["code"])
    assert rebuilt == [set(f) for f in truth["frames"]]
    rb_frames = [i for i, f in enumerate(truth["frames"]) if "RB" in f]
    assert 5 <= len(rb_frames) <= 30  # in view ~1-3 s at 10 fps
    masks = tmp_path / truth["crack_masks"]
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in rb_frames]
    mask = cv2.imread(str(masks / f"{rb_frames[len(rb_frames) // 2]:06d}.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (SMALL[1], SMALL[0]) and set(np.unique(mask)) == {0, 255}
    assert truth["frames"][0] == []  # the inspection starts on normal pipe


def test_every_code_changes_the_frame_visibly():
    """Rendering a defect into the same scene must change a visible area (it is drawn, and in view)."""
    for code in SEWER_CODES:
        changed = []
        for index in range(4):
            plain = render_sample((), seed=11, index=index, size=(160, 128)).image.astype(int)
            shown = render_sample((code,), seed=11, index=index, size=(160, 128)).image.astype(int)
            changed.append((np.abs(plain - shown).max(axis=2) > 25).mean())
        assert np.median(changed) > 0.003, (code, changed)


def test_render_frame_is_deterministic_and_checks_codes():
    a = render_frame(("FS", "RO"), seed=2)
    assert a.shape == (256, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_frame(("FS", "RO"), seed=2))
    assert not np.array_equal(a, render_frame(("FS", "RO"), seed=3))
    with pytest.raises(DataError, match="unknown defect code"):
        render_frame(("XX",))


def test_bad_settings_are_one_line_errors(tmp_path):
    assert parse_size("224x160") == (224, 160)
    for bad in ("320by256", "320x", "10x10"):
        with pytest.raises(DataError, match="bad size"):
            parse_size(bad)
    with pytest.raises(DataError, match="val fraction"):
        generate(tmp_path / "x", images=5, val_fraction=1.5, progress=False)
    foreign = tmp_path / "foreign"
    (foreign / "sewerml").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by"):
        generate(foreign, images=5, videos=0, crack_images=0, progress=False)
