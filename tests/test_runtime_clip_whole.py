"""Clip mode over the whole video (`--clip-span whole`): one window with exactly the training sampling.

The super-image models are trained on whole videos (9 frames spread over each clip); for archive
footage the runtime can classify a file the same way instead of over sliding windows. The toy clip
model (RB on when at least 4 of the 9 tiles are red) makes the verdict predictable.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from edgesewer.data.superimage import sample_indices
from edgesewer.errors import EdgesewerError
from edgesewer.runtime.clip import WHOLE, ClipClassifier, WholeVideoWindow, classify_video, parse_span
from edgesewer.runtime.events import read_events
from test_runtime_clip_mode import app, make_toy_clip_artifact
from test_runtime_support import RED, colour_plan, write_video


@pytest.fixture(scope="module")
def long_red_video(tmp_path_factory):
    """100 frames at 10 fps, red from frame 30 to 79: the whole-video sampling (5, 16, 27, 38, 50, 61, 72, 83,
    94) puts 4 red tiles in the super-image (RB on); a 2 s window never holds a red and a grey majority mix
    that the whole video does not."""
    return write_video(tmp_path_factory.mktemp("video") / "long.avi", colour_plan(100, {(30, 79): RED}), fps=10.0)


def test_parse_span():
    assert parse_span(None) is None
    assert parse_span("whole") == WHOLE and parse_span("0") == WHOLE and parse_span(0.0) == WHOLE
    assert parse_span("4") == 4.0 and parse_span(2.5) == 2.5
    with pytest.raises(EdgesewerError, match="give seconds"):
        parse_span("long")


def test_whole_video_is_one_window_with_the_training_sampling(long_red_video, tmp_path):
    clip = make_toy_clip_artifact(tmp_path / "models")
    predictions, segments = classify_video(clip, long_red_video, span_s="whole")
    assert len(predictions) == 1
    p = predictions[0]
    assert p.frame_indices == sample_indices(100, 9).tolist() == [5, 16, 27, 38, 50, 61, 72, 83, 94]
    assert (p.start_frame, p.end_frame) == (0, 99) and p.codes == ["RB"]
    assert [(s.code, s.start_frame, s.end_frame) for s in segments] == [("RB", 0, 99)]
    windows, _ = classify_video(clip, long_red_video, span_s=2.0)  # the sliding window, for contrast
    assert len(windows) > 1


def test_whole_window_without_a_frame_count_stays_small_and_uniform():
    window = WholeVideoWindow(tile=4, k=9)
    frame = np.zeros((8, 8, 3), np.uint8)
    for i in range(1000):
        window.push(frame, i, i / 25)
    assert len(window._thinned) <= 8 * 9  # bounded memory whatever the length
    indices, _, tiles = window.select()
    assert len(indices) == 9 and len(tiles) == 9 and indices == sorted(indices)
    exact = sample_indices(1000, 9)
    assert np.abs(np.array(indices) - exact).max() <= window._stride  # uniform up to the thinning stride
    assert window.span() == (0, 999, 0.0, 999 / 25)


def test_whole_window_refuses_a_live_stream(tmp_path):
    clip = ClipClassifier(make_toy_clip_artifact(tmp_path / "models"), span_s="whole")
    assert clip.whole and "whole video" in clip.describe()
    with pytest.raises(EdgesewerError, match="live stream has no end"):
        clip.set_source(SimpleNamespace(is_live=True))
    clip.close()


def test_cli_clip_span_whole(long_red_video, tmp_path):
    clip = make_toy_clip_artifact(tmp_path / "models")
    result = CliRunner().invoke(app, ["run", "--clip-model", str(clip), "-s", str(long_red_video), "--headless",
                                      "--clip-span", "whole", "--events", str(tmp_path / "ev.jsonl")])
    assert result.exit_code == 0, result.output
    clips = [e for e in read_events(tmp_path / "ev.jsonl") if e["event"] == "clip"]
    assert [(e["start_frame"], e["end_frame"], e["frames"], e["codes"]) for e in clips] == [
        (0, 99, [5, 16, 27, 38, 50, 61, 72, 83, 94], ["RB"])]
