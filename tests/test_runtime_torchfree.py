"""The runtime must load and run where only numpy, OpenCV and an inference backend are installed.

A subprocess installs an import blocker for torch, torchvision, timm and onnx, imports every runtime
module and the `run` command, then runs a whole inspection (classifier + segmenter, events, report,
annotated video) on a video file.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from test_runtime_support import GREEN, RED, colour_plan, make_classifier_artifact, make_segmenter_artifact, write_video

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = {"torch", "torchvision", "timm", "onnx"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
            return None

    sys.meta_path.insert(0, Blocker())
    import importlib, pkgutil
    import edgesewer.cli, edgesewer.cli.run, edgesewer.runtime
    modules = [m.name for m in pkgutil.walk_packages(edgesewer.runtime.__path__, "edgesewer.runtime.")]
    for name in modules:  # every runtime module, including ones added later
        importlib.import_module(name)
    from edgesewer.runtime.pipeline import RunOptions
    from edgesewer.runtime.runner import run_inspection

    video, cls, seg, out = sys.argv[1:5]
    options = RunOptions(events=out + "/events.jsonl", report=out + "/report",
                         output="file://" + out + "/annotated.mp4", live_status=False)
    summary = run_inspection(video, cls, seg, options=options)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"frames": summary.frames, "ended_by": summary.ended_by, "loaded": loaded, "modules": modules,
                      "segments": [(s.code, s.start_frame, s.end_frame) for s in summary.segments]}))
    """
)


def test_runtime_runs_with_torch_timm_and_onnx_blocked(tmp_path):
    cls = make_classifier_artifact(tmp_path / "models")
    seg = make_segmenter_artifact(tmp_path / "models")
    video = write_video(tmp_path / "pipe.avi", colour_plan(40, {(5, 14): RED, (25, 34): GREEN}))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(video), str(cls), str(seg), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert {"edgesewer.runtime.pipeline", "edgesewer.runtime.backends.tensorrt"} <= set(result["modules"])
    assert (result["frames"], result["ended_by"]) == (40, "end of stream")
    assert sorted(map(tuple, result["segments"])) == [("CRACK", 5, 14), ("OB", 25, 34), ("RB", 5, 14)]
    assert (tmp_path / "report" / "report.html").exists() and (tmp_path / "annotated.mp4").stat().st_size > 0
