"""`edgesewer batch` on a local Ray instance, on small coloured test videos and the toy classifier:
the archive summary equals per-video `run_inspection` results exactly, a rerun resumes, corrupt and
truncated files are recorded as failed without stopping the batch, and a worker killed mid-video
leaves no half-written report and is redone."""

import csv
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from test_runtime_support import GREEN, RED, colour_plan, make_classifier_artifact, write_video
from typer.testing import CliRunner

from edgesewer.batch.manifest import Manifest
from edgesewer.batch.sources import expand_archive, name_videos
from edgesewer.batch.worker import TEST_KILL_ENV, VideoJob
from edgesewer.errors import DataError
from edgesewer.runtime.pipeline import RunOptions
from edgesewer.runtime.runner import run_inspection

PLANS = {
    "street_a/0001.avi": colour_plan(60, {(5, 19): RED, (35, 50): GREEN}),
    "street_b/0001.avi": colour_plan(50, {(20, 40): GREEN}),
    "clean.avi": colour_plan(40, {}),
}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="edgesewer batch needs Ray: pip install -e '.[batch]'")
    from edgesewer.batch.ray_runner import init_ray

    init_ray(ray, num_cpus=2)  # one local instance for the module; run_batch uses it and leaves it running
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    model = make_classifier_artifact(root / "models")
    videos = root / "archive"
    for rel, plan in PLANS.items():
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(videos / rel, plan)
    (videos / "x.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    mp4 = root / "whole.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for _ in range(30):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    data = mp4.read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    return root, model, videos


def config(out, model, source, **kw):
    from edgesewer.batch.ray_runner import BatchConfig

    return BatchConfig(source=str(source), out=out, job=VideoJob(model=str(model)), **kw)


def read_summary(out):
    with open(out / "summary.csv", newline="") as fh:
        return {row["video"]: row for row in csv.DictReader(fh)}


def test_sources_folder_glob_list_and_unique_names(archive, tmp_path):
    root, _, videos = archive
    found = expand_archive(videos)
    assert [p.relative_to(videos).as_posix() for p in found] == [
        "clean.avi", "street_a/0001.avi", "street_b/0001.avi", "truncated.mp4", "x.mp4"]
    assert expand_archive(f"{videos}/**/0001.avi") == found[1:3]
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# two videos\n{videos / 'clean.avi'}\n\n{os.path.relpath(found[1], tmp_path)}\n")
    assert expand_archive(listing) == found[:2]
    names = [v.name for v in name_videos(found)]
    assert names[0] == "clean" and names[1] != names[2] and all(n.startswith("0001-") for n in names[1:3])
    assert len(set(names)) == 5
    with pytest.raises(DataError, match="no such folder"):
        expand_archive(tmp_path / "missing")
    listing.write_text("nothere.mp4\n")
    with pytest.raises(DataError, match=r"videos.txt:1: nothere.mp4 is not a file"):
        expand_archive(listing)


def test_summary_matches_run_failed_videos_and_resume(ray_local, archive, tmp_path):
    from edgesewer.batch.ray_runner import run_batch

    root, model, videos = archive
    out = tmp_path / "out"
    result = run_batch(config(out, model, videos, workers=2), progress=False)
    assert (result.total, result.done, result.failed, result.skipped) == (5, 3, 2, 0)

    # (1) every row equals a plain run_inspection of the same file (what `edgesewer run` does)
    manifest = Manifest.load(out)
    rows = read_summary(out)
    for entry in manifest.videos.values():
        if entry.state != "done":
            continue
        direct = tmp_path / "direct" / entry.name
        summary = run_inspection(entry.source, model, options=RunOptions(
            output="none", headless=True, live_status=False, events=direct / "events.jsonl", report=direct))
        by_code = {}
        for s in summary.segments:
            by_code[s.code] = by_code.get(s.code, 0) + 1
        assert entry.row["frames"] == summary.frames == len(PLANS[os.path.relpath(entry.source, videos)])
        assert entry.row["by_code"] == by_code
        assert entry.row["duration_s"] == pytest.approx(summary.frames / 25.0)
        assert entry.row["max_severity"] == round(max((s.severity for s in summary.segments), default=0.0), 4)
        row = rows[entry.name]
        assert (int(row["frames"]), int(row["segments"]), row["status"]) == (summary.frames, len(summary.segments),
                                                                             "done")
        assert {c: int(row[c]) for c in ("RB", "OB") if int(row[c])} == by_code
        ours = json.loads((out / "videos" / entry.name / "report.json").read_text())
        theirs = json.loads((direct / "report.json").read_text())
        assert ours["segments"] == theirs["segments"] and ours["summary"] == theirs["summary"]
        assert (out / "videos" / entry.name / "observations.csv").read_text() == (direct / "observations.csv").read_text()
        events = [json.loads(line)["event"] for line in (out / "videos" / entry.name / "events.jsonl").open()]
        assert events[0] == "start" and events[-1] == "end"
    assert rows["TOTAL"]["frames"] == str(sum(len(p) for p in PLANS.values()))
    assert rows["TOTAL"]["RB"] == "1" and rows["TOTAL"]["OB"] == "2" and rows["TOTAL"]["status"] == "3 done, 2 failed"
    assert "Archive summary" in (out / "summary.html").read_text()

    # (3) corrupt and truncated files: failed, one line naming the file, nothing left in videos/
    for bad in ("x.mp4", "truncated.mp4"):
        entry = manifest.videos[str(videos / bad)]
        assert entry.state == "failed" and "\n" not in entry.error
        assert entry.error.startswith(str(videos / bad)) and "cannot open as a video" in entry.error
        assert rows[entry.name]["status"] == "failed" and rows[entry.name]["error"] == entry.error
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(
        e.name for e in manifest.videos.values() if e.state == "done")

    # (2) resume: the same command skips done videos (untouched) and retries the failed ones
    reports = {e.name: (out / "videos" / e.name / "report.json").stat().st_mtime_ns
               for e in manifest.videos.values() if e.state == "done"}
    again = run_batch(config(out, model, videos, workers=2), progress=False)
    assert (again.done, again.failed, again.skipped) == (0, 2, 3)
    after = Manifest.load(out)
    assert {e.name: e.attempts for e in after.videos.values()} == {
        e.name: e.attempts + (e.state == "failed") for e in manifest.videos.values()}
    assert reports == {n: (out / "videos" / n / "report.json").stat().st_mtime_ns for n in reports}

    # other settings in the same folder are refused, one line, until --restart
    from edgesewer.batch.ray_runner import run_batch as rb
    from edgesewer.errors import EdgesewerError

    other = config(out, model, videos)
    other.job.options = {"smooth": "kofn:3/5"}
    with pytest.raises(EdgesewerError, match="other settings .*options"):
        rb(other, progress=False)


def test_killed_worker_leaves_no_report_and_is_redone(ray_local, archive, tmp_path, monkeypatch):
    from edgesewer.batch.ray_runner import run_batch

    root, model, videos = archive
    source = tmp_path / "two"
    source.mkdir()
    shutil.copy(videos / "street_a" / "0001.avi", source / "victim.avi")
    shutil.copy(videos / "clean.avi", source / "clean.avi")
    out = tmp_path / "out"
    # the worker SIGKILLs itself at frame 20 of 60, and Ray may not retry: the video fails cleanly
    monkeypatch.setenv(TEST_KILL_ENV, "victim:20")
    result = run_batch(config(out, model, source, workers=2, retries=0), progress=False)
    assert (result.done, result.failed) == (1, 1)
    entry = Manifest.load(out).videos[str(source / "victim.avi")]
    assert entry.state == "failed" and "worker process died" in entry.error and "\n" not in entry.error
    assert not (out / "videos" / "victim").exists()
    assert [p.name for p in (out / "videos").iterdir()] == ["clean"]  # no victim.partial-* either

    # rerun without the kill: only the victim runs, and completes
    monkeypatch.delenv(TEST_KILL_ENV)
    again = run_batch(config(out, model, source, workers=2, retries=0), progress=False)
    assert (again.done, again.failed, again.skipped) == (1, 0, 1)
    entry = Manifest.load(out).videos[str(source / "victim.avi")]
    assert (entry.state, entry.attempts, entry.row["frames"]) == ("done", 2, 60)
    assert json.loads((out / "videos" / "victim" / "report.json").read_text())["summary"]["segments"] == 2

    # with retries, Ray reruns the killed task itself: one invocation, one attempt in the manifest
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(TEST_KILL_ENV, f"victim:20:{marker}")
    out2 = tmp_path / "out2"
    result = run_batch(config(out2, model, source, workers=2, retries=1), progress=False)
    assert marker.exists() and (result.done, result.failed) == (2, 0)
    assert sorted(p.name for p in (out2 / "videos").iterdir()) == ["clean", "victim"]


def test_cli_batch(ray_local, archive, tmp_path):
    from edgesewer.cli import app

    root, model, videos = archive
    out = tmp_path / "out"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{videos / 'clean.avi'}\n{videos / 'x.mp4'}\n")
    result = CliRunner().invoke(app, ["batch", "-s", str(listing), "-m", str(model), "-o", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output  # a video failed: the summary says which
    assert "1 videos done, 1 failed" in result.output and "failed: " in result.output
    assert read_summary(out)["clean"]["status"] == "done"
    result = CliRunner().invoke(app, ["batch", "-s", str(tmp_path / "nothing"), "-m", str(model), "-o", str(out)])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("error: ")


def test_without_ray_the_command_says_how_to_install_it(archive, tmp_path, monkeypatch):
    import sys

    from edgesewer.cli import app

    root, model, videos = archive
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as on a base install
    result = CliRunner().invoke(app, ["batch", "-s", str(videos), "-m", str(model), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: edgesewer batch needs Ray")
    assert 'pip install "edgesewer[batch]"' in result.output


def test_an_unreachable_cluster_is_one_line_without_its_password():
    from edgesewer.batch.ray_runner import init_ray
    from edgesewer.errors import EdgesewerError

    class FakeRay:
        calls = 0

        def init(self, **kwargs):
            FakeRay.calls += 1
            raise ConnectionError(f"Failed to connect to {kwargs['address']}\nmore lines")

        def shutdown(self):
            pass

    with pytest.raises(EdgesewerError) as info:
        init_ray(FakeRay(), "ray://ops:s3cret@head:10001")
    message = str(info.value)
    assert "s3cret" not in message and "ray://ops:***@head:10001" in message and "\n" not in message
    assert FakeRay.calls == 1  # a cluster is not retried; only a local start is
