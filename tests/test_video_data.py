"""Video decoding, VideoPipe label/result files and cutting synthetic inspection videos into clips."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesewer.data.video import (align_results, cut_inspection_clips, plan_clips, probe_video, read_clip,
                                  read_frames, read_inspection_gt, read_labels, read_results, write_labels,
                                  write_results)
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, VIDEOPIPE_CODES

BITS = 8  # frame i shows its number as 8 black/white vertical bars (MSB left): survives lossy mp4v coding


def frame_image(i: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    bar = width // BITS
    for b in range(BITS):
        if (i >> (BITS - 1 - b)) & 1:
            image[:, b * bar:(b + 1) * bar] = 255
    return image


def write_numbered_video(path: Path, n_frames: int, fps: float = 10.0, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n_frames):
        writer.write(frame_image(i, size))
    writer.release()
    return path


def frame_number(frame: np.ndarray) -> int:
    bar = frame.shape[1] // BITS
    bits = [frame[:, b * bar + 2:(b + 1) * bar - 2].mean() > 127 for b in range(BITS)]
    return int(sum(int(on) << (BITS - 1 - b) for b, on in enumerate(bits)))


def test_probe_and_read_frames_in_any_order(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    info = probe_video(video)
    assert (info.n_frames, info.fps, info.width, info.height) == (40, 10.0, 64, 48)
    frames = read_frames(video, [7, 0, 39, 7])
    assert [frame_number(f) for f in frames] == [7, 0, 39, 7]
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8


def test_far_frames_are_reached_by_seeking_to_the_exact_frame(tmp_path):
    video = write_numbered_video(tmp_path / "long.mp4", 256)  # 8-bit frame numbers: 0..255
    wanted = [250, 3, 151, 152, 60]
    assert [frame_number(f) for f in read_frames(video, wanted, seek_gap=20)] == wanted
    assert [frame_number(f) for f in read_frames(video, wanted, seek_gap=None)] == wanted
    with pytest.raises(DataError, match="video ends before frame 400"):
        read_frames(video, [10, 400], seek_gap=20)


def test_read_clip_takes_the_segment_centres(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 36)
    # 36 frames in 9 segments of 4: centres floor(2 + 4j) = 2, 6, ..., 34.
    assert [frame_number(f) for f in read_clip(video)] == [2, 6, 10, 14, 18, 22, 26, 30, 34]


def test_unreadable_and_too_short_videos_give_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing.mp4: video file not found"):
        probe_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video")
    with pytest.raises(DataError, match=r"junk.mp4: cannot open as a video"):
        read_clip(junk)
    short = write_numbered_video(tmp_path / "short.mp4", 5)
    with pytest.raises(DataError, match=r"short.mp4: only 5 frames; a clip needs at least 9"):
        read_clip(short)
    with pytest.raises(DataError, match=r"short.mp4: video ends before frame 8 \(too short"):
        read_frames(short, [1, 8])
    with pytest.raises(DataError) as info:
        read_frames(short, [20])
    assert "\n" not in str(info.value)  # one line for the CLI


def test_labels_round_trip_and_validation(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"d1.mp4": [1, 14], "d2.mp4": [0], "d3.mp4": []}))
    labels = read_labels(path)
    assert labels.classes == VIDEOPIPE_CODES and labels.names == ["d1.mp4", "d2.mp4", "d3.mp4"]
    assert labels.targets.shape == (3, 17)
    assert np.flatnonzero(labels.targets[0]).tolist() == [1, 14] and labels.targets[2].sum() == 0
    assert labels.path(1) == tmp_path / "d2.mp4"
    assert read_labels(path, "sewerml", video_dir="/videos").path(0) == Path("/videos/d1.mp4")
    write_labels(tmp_path / "copy.json", labels.names, labels.targets)
    assert json.loads((tmp_path / "copy.json").read_text()) == {"d1.mp4": [1, 14], "d2.mp4": [0], "d3.mp4": []}
    sub = labels.subset([2, 0])
    assert sub.names == ["d3.mp4", "d1.mp4"] and sub.targets[1, 14] == 1


@pytest.mark.parametrize("content, message", [
    ('{"a.mp4": [17]}', r"bad.json: entry 'a.mp4': class index 17 is not in 0..16"),
    ('{"a.mp4": 3}', r"bad.json: entry 'a.mp4': expected a list of class indices"),
    ('{"a.mp4": [true]}', r"class index True is not in"),
    ('["a.mp4"]', r"bad.json: expected a JSON object"),
    ('{"a.mp4": [1,}', r"bad.json: not valid JSON \(line 1"),
    ('{}', r"bad.json: lists no videos"),
])
def test_bad_label_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labels(path)


def test_results_round_trip_and_alignment(tmp_path):
    scores = np.linspace(0, 1, 34).reshape(2, 17)
    path = write_results(tmp_path / "test_result.json", ["b.mp4", "a.mp4"], scores)
    results = read_results(path)
    np.testing.assert_allclose(results["b.mp4"], scores[0], atol=1e-6)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"a.mp4": [0], "b.mp4": [3]}))
    aligned = align_results(read_labels(gt), results, path)
    np.testing.assert_allclose(aligned, scores[::-1], atol=1e-6)  # in the ground truth's order
    gt.write_text(json.dumps({"a.mp4": [0], "c.mp4": [3]}))
    with pytest.raises(DataError, match=r"test_result.json: no scores for 1 of the 2 videos .* e.g. c.mp4"):
        align_results(read_labels(gt), results, path)
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps({"a.mp4": [0.0] * 16}))  # the official script's 16-zero default
    with pytest.raises(DataError, match=r"short.json: entry 'a.mp4': expected 17 numbers, got 16 values"):
        read_results(bad)


def test_plan_clips():
    rng = np.random.default_rng(0)
    # 100 frames at 10 fps, fixed 3 s clips: three 30-frame windows; the 10-frame remainder is dropped.
    assert plan_clips(100, 10, rng, 3, 3) == [(0, 30), (30, 60), (60, 90)]
    windows = plan_clips(1000, 25, rng, 3, 6)
    assert windows[0][0] == 0 and all(b == c for (_, b), (c, _) in zip(windows, windows[1:]))
    assert all(75 <= b - a <= 150 for a, b in windows)
    # Overlapping: a 3 s window every 1 s -> starts 0, 10, ..., 70 (the next would end past frame 100).
    assert plan_clips(100, 10, rng, 3, 3, stride_s=1.0) == [(s, s + 30) for s in range(0, 71, 10)]


def _inspection_video(folder: Path, n_frames: int = 60, fps: float = 10.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_numbered_video(folder / "inspection_000.mp4", n_frames, fps)
    frames = [[] for _ in range(n_frames)]
    for i in range(12, 18):
        frames[i] = ["RB"]
    for i in range(28, 45):
        frames[i] = ["FS", "RO"] if i < 33 else ["RO"]
    gt = {"fps": fps, "n_frames": n_frames, "codes": ["RB", "FS", "RO"], "frames": frames, "segments": []}
    (folder / "inspection_000.json").write_text(json.dumps(gt))
    return folder / "inspection_000.json"


def test_inspection_ground_truth_and_clip_cutting(tmp_path):
    json_path = _inspection_video(tmp_path / "synth" / "videos")
    gt = read_inspection_gt(json_path)
    assert gt.n_frames == 60 and gt.fps == 10.0 and gt.video.name == "inspection_000.mp4"
    assert [SEWER_CODES[k] for k in np.flatnonzero(gt.targets(0, 20))] == ["RB"]
    assert [SEWER_CODES[k] for k in np.flatnonzero(gt.targets(20, 40))] == ["FS", "RO"]
    assert gt.targets(45, 60).sum() == 0  # a normal stretch

    labels = cut_inspection_clips(tmp_path / "synth", tmp_path / "clips", min_s=2.0, max_s=2.0, progress=False)
    # 60 frames in 20-frame clips (2 s at 10 fps): [0, 20) RB, [20, 40) FS + RO, [40, 60) RO.
    assert labels.names == [f"clips/inspection_000_c00{i}.mp4" for i in range(3)]
    assert labels.classes == SEWER_CODES
    assert [[SEWER_CODES[k] for k in np.flatnonzero(row)] for row in labels.targets] == [["RB"], ["FS", "RO"], ["RO"]]
    second = labels.path(1)
    assert probe_video(second).n_frames == 20
    assert frame_number(read_frames(second, [0])[0]) == 20  # the clip starts at frame 20 of the source


def test_overlapping_clips_carry_their_own_frames_and_labels(tmp_path):
    _inspection_video(tmp_path / "synth" / "videos")
    labels = cut_inspection_clips(tmp_path / "synth", tmp_path / "clips", min_s=2.0, max_s=2.0, stride_s=1.0,
                                  progress=False)
    # Windows [0, 20), [10, 30), [20, 40), [30, 50), [40, 60).
    assert len(labels) == 5
    codes = [[SEWER_CODES[k] for k in np.flatnonzero(row)] for row in labels.targets]
    assert codes == [["RB"], ["RB", "FS", "RO"], ["FS", "RO"], ["FS", "RO"], ["RO"]]
    for c, start in enumerate(range(0, 41, 10)):
        assert probe_video(labels.path(c)).n_frames == 20
        assert [frame_number(f) for f in read_frames(labels.path(c), [0, 19])] == [start, start + 19]


def test_bad_inspection_json(tmp_path):
    path = tmp_path / "inspection_000.json"
    path.write_text(json.dumps({"fps": 10, "frames": [["RB"], ["XX"]]}))
    with pytest.raises(DataError, match=r"inspection_000.json: frames\[1\] = \['XX'\] is not a list of Sewer-ML codes"):
        read_inspection_gt(path)
    with pytest.raises(DataError, match="no synthetic inspection videos"):
        cut_inspection_clips(tmp_path / "empty", tmp_path / "out", progress=False)


def test_frames_become_a_sewerml_still_set_split_by_video(tmp_path):
    from edgesewer.data.frames import extract_inspection_frames
    from edgesewer.data.sewerml import load_split

    first = _inspection_video(tmp_path / "synth" / "videos")
    second = first.with_name("inspection_001.json")
    write_numbered_video(second.with_suffix(".mp4"), 20)
    second.write_text(json.dumps({"fps": 10.0, "n_frames": 20, "water_level": 5,
                                  "frames": [["OB"] if i >= 10 else [] for i in range(20)]}))
    summary = extract_inspection_frames(tmp_path / "synth", tmp_path / "frames", stride=4, val_videos=1,
                                        progress=False)
    assert (summary.train_images, summary.val_images) == (15, 5)  # frames 0, 4, ... of 60 and of 20
    assert (summary.train_videos, summary.val_videos) == (["inspection_000"], ["inspection_001"])

    train = load_split(tmp_path / "frames", "Train")
    assert train.filenames[:2] == ["inspection_000_f000000.png", "inspection_000_f000004.png"]
    codes = {name: [SEWER_CODES[k] for k in np.flatnonzero(row)] for name, row in zip(train.filenames, train.labels)}
    # the labels are those of the frame itself: RB in 12..17, FS + RO in 28..32, RO alone in 33..44
    assert codes["inspection_000_f000012.png"] == ["RB"] and codes["inspection_000_f000016.png"] == ["RB"]
    assert codes["inspection_000_f000028.png"] == ["FS", "RO"] and codes["inspection_000_f000036.png"] == ["RO"]
    assert codes["inspection_000_f000020.png"] == [] and codes["inspection_000_f000044.png"] == ["RO"]
    image = cv2.imread(str(train.image_path(train.filenames.index("inspection_000_f000036.png"))))
    assert frame_number(image) == 36  # the image is that frame of the video

    val = load_split(tmp_path / "frames", "Val")
    assert [int(row.any()) for row in val.labels] == [0, 0, 0, 1, 1]
    header, *rows = (tmp_path / "frames" / "SewerML_Val.csv").read_text().splitlines()
    assert rows[0].split(",")[1:3] == ["5", "1"]  # water level from the video's JSON, VA set


def test_frames_refuse_to_leave_no_training_video(tmp_path):
    from edgesewer.data.frames import extract_inspection_frames

    _inspection_video(tmp_path / "synth" / "videos")
    with pytest.raises(DataError, match="1 videos; --val-videos must leave at least one for training"):
        extract_inspection_frames(tmp_path / "synth", tmp_path / "frames", val_videos=1, progress=False)
