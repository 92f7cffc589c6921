"""The driver of `edgesewer batch`: one Ray Core task per video, the manifest, retries and progress.

Why Ray Core tasks and not Ray Data: a video is the unit of work, of failure and of output (one
report folder, renamed into place when complete), and a video decodes sequentially; Ray Data would
split the archive into blocks of rows and push frames through its object store, which for a pipeline
that is decode-bound on the same node buys nothing and costs copies. Tasks give each video its own
`num_cpus`/`num_gpus`, Ray's own retry of a dead worker (`max_retries`), and `ray.wait` lets the driver
record each result in the manifest as it arrives.

Locally, `ray.init()` starts a Ray instance for the command and stops it at the end; `address="auto"`
or `ray://HOST:10001` runs on an existing cluster (the archive and DIR must then be on storage that
every node mounts at the same path, and edgesewer installed on every node).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgesewer.batch.manifest import Manifest, VideoEntry
from edgesewer.batch.sources import expand_archive, name_videos
from edgesewer.batch.summary import write_summary
from edgesewer.batch.worker import PARTIAL_MARK, TEST_KILL_ENV, VideoJob, process_video
from edgesewer.errors import EdgesewerError
from edgesewer.runtime.uri import redact

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # results are a few hundred bytes; frames never pass through Ray


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise EdgesewerError(
            f"edgesewer batch needs Ray, which is not installed ({exc}): pip install \"edgesewer[batch]\""
        ) from None
    return ray


@dataclass
class BatchConfig:
    source: str  # a folder, a glob or a list file
    out: Path
    job: VideoJob
    address: str | None = None  # None: a local Ray instance for this command; "auto" or "ray://HOST:10001"
    workers: int | None = None  # videos in flight at once; None: as many as the cluster's CPUs (GPUs) allow
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    retries: int = 2  # Ray's re-runs of a video whose worker process died
    restart: bool = False  # forget the manifest's finished videos: redo all


@dataclass
class BatchResult:
    total: int
    skipped: int  # done in an earlier run
    done: int  # done in this run
    failed: int  # failed in this run
    frames: int  # frames of the videos done in this run
    elapsed_s: float
    manifest: Manifest
    summary_csv: Path
    summary_html: Path
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _describe_address(address: str | None) -> str:
    return "a local Ray instance" if address is None else f"Ray at {redact(address)}"


def _load_manifest(cfg: BatchConfig) -> Manifest:
    config = cfg.job.config()
    manifest = Manifest.load(cfg.out)
    if manifest is None:
        return Manifest(cfg.out / "manifest.json", config)
    if cfg.restart:
        names = {k: e.name for k, e in manifest.videos.items()}
        fresh = Manifest(manifest.path, config)
        fresh.videos = {k: VideoEntry(k, name) for k, name in names.items()}
        return fresh
    if manifest.config != config:
        differs = ", ".join(k for k in sorted(set(config) | set(manifest.config))
                            if config.get(k) != manifest.config.get(k))
        raise EdgesewerError(
            f"{manifest.path}: this batch was run with other settings ({differs} differ); "
            "use a new --out, or --restart to redo every video with the new ones"
        )
    return manifest


def _clean_partials(out: Path) -> None:
    """Folders of videos that a dead worker (or driver) left half-written."""
    videos = out / "videos"
    if videos.is_dir():
        for path in videos.iterdir():
            if path.is_dir() and (PARTIAL_MARK in path.name or ".old-" in path.name):
                shutil.rmtree(path, ignore_errors=True)


def _error_line(source: str, exc: BaseException, ray) -> str:
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
        text = str(cause).strip().splitlines()
        return f"{source}: {type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"{source}: the worker process died while running this video ({type(exc).__name__})"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{source}: {type(exc).__name__}: {first}"


def local_ray_options(num_cpus: int) -> dict[str, Any]:
    """ray.init() arguments for the instance a command starts on its own machine."""
    import logging

    return {"num_cpus": num_cpus, "include_dashboard": False, "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
            "logging_level": logging.WARNING, "log_to_driver": False}


def init_ray(ray, address: str | None = None, num_cpus: int | None = None, attempts: int = 2) -> None:
    """Start a local Ray instance (address None) or connect to a cluster; one-line error when neither works.

    A local start is tried twice: Ray gives its raylet a fixed 30 s to register, which a machine that
    is busy with other work can miss once (what is left of the failed start is shut down first).
    """
    import logging

    kwargs = local_ray_options(num_cpus or os.cpu_count() or 1) if address is None else {
        "address": address, "logging_level": logging.WARNING, "log_to_driver": False}
    for attempt in range(1, (attempts if address is None else 1) + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, Exception
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            if attempt >= (attempts if address is None else 1):
                first = (str(exc).strip().splitlines() or [""])[0]
                raise EdgesewerError(f"cannot start or reach {_describe_address(address)}: {redact(first)}") from None


def _init_ray(ray, cfg: BatchConfig) -> bool:
    """Connect or start; True when this call started Ray (and so must stop it)."""
    if ray.is_initialized():
        return False
    cpus = os.cpu_count() or 1
    if cfg.workers:
        cpus = max(cpus, math.ceil(cfg.workers * cfg.cpus_per_task))  # --workers is what the user asked for
    init_ray(ray, cfg.address, cpus)
    return True


def _slots(ray, cfg: BatchConfig) -> int:
    if cfg.workers:
        return cfg.workers
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // cfg.cpus_per_task) if cfg.cpus_per_task > 0 else 10**6
    by_gpu = int(resources.get("GPU", 0) // cfg.gpus_per_task) if cfg.gpus_per_task > 0 else 10**6
    slots = min(by_cpu, by_gpu)
    if slots < 1:
        raise EdgesewerError(
            f"{_describe_address(cfg.address)} has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} "
            f"GPUs: not enough for one task of {cfg.cpus_per_task:g} CPU and {cfg.gpus_per_task:g} GPU"
        )
    return slots


class _Saver:
    """Saves the manifest at most once a second (it holds every video of the archive; thousands of videos
    make it megabytes). What a driver killed in between loses is redone by the next run: a video whose
    result was not recorded yet is still `running` in the manifest, and `running` means redo."""

    def __init__(self, manifest: Manifest, every_s: float = 1.0) -> None:
        self.manifest, self.every_s, self.last = manifest, every_s, 0.0

    def save(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.manifest.save()
            self.last = now


class _Progress:
    """The archive's progress on the driver's terminal: videos done, frames/s across workers, time left."""

    def __init__(self, total: int, enabled: bool, console=None) -> None:
        self.total, self.started, self.frames, self.done, self.failed = total, time.perf_counter(), 0, 0, 0
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("videos"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]}"),
                TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                console=console or Console(stderr=True), transient=False,
            )
            self._task = self._progress.add_task("batch", total=total, fps="", failed="", eta="")

    def __enter__(self):
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self.update()
            self._progress.__exit__(*exc)

    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        if not finished:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed / finished * (self.total - finished)

    def update(self, frames: int = 0, ok: bool | None = None) -> None:
        self.frames += frames
        if ok is True:
            self.done += 1
        elif ok is False:
            self.failed += 1
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        eta = self.eta_s()
        eta_text = "" if eta is None else f"~{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d} left"
        self._progress.update(
            self._task, completed=self.done + self.failed, fps=f"{self.frames / elapsed:.1f} frames/s",
            failed=f"{self.failed} failed" if self.failed else "", eta=eta_text,
        )


def run_batch(
    cfg: BatchConfig,
    *,
    progress: bool = True,
    console=None,
    log: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run every video of the archive that is not done yet; update the manifest and the summary."""
    ray = import_ray()
    log = log or (lambda message: None)
    out = Path(cfg.out).resolve()
    cfg.out = out
    if cfg.gpus_per_task < 0 or cfg.cpus_per_task < 0 or (cfg.workers is not None and cfg.workers < 1):
        raise EdgesewerError("--workers must be at least 1, --cpus-per-task and --gpus-per-task not negative")
    paths = [p for p in expand_archive(cfg.source) if out not in p.parents]
    out.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(cfg)
    for video in name_videos(paths, {k: e.name for k, e in manifest.videos.items()}):
        manifest.videos.setdefault(video.key, VideoEntry(video.key, video.name))
    _clean_partials(out)
    archive = {str(p) for p in paths}
    todo = [k for k, e in manifest.videos.items() if k in archive and not (
        e.state == "done" and e.row is not None and (out / "videos" / e.name / "report.json").exists())]
    skipped = sum(1 for k in archive if k not in todo)
    for key in todo:
        entry = manifest.videos[key]
        if entry.state != "failed":  # failed keeps its error on the page until the retry ends
            entry.state = "pending"
    manifest.save()
    job = dataclasses.replace(
        cfg.job,
        threads=cfg.job.threads or max(1, round(cfg.cpus_per_task)),
        test_kill=cfg.job.test_kill or os.environ.get(TEST_KILL_ENV) or None,
    )
    result = BatchResult(len(archive), skipped, 0, 0, 0, 0.0, manifest, out / "summary.csv", out / "summary.html")
    if not todo:
        log(f"all {len(archive)} videos are done already ({out / 'manifest.json'})")
        result.summary_csv, result.summary_html = write_summary(manifest, out)
        return result
    ray_started = time.perf_counter()
    owns = _init_ray(ray, cfg)
    started = time.perf_counter()  # frames/s across workers: from here, without Ray's own start
    try:
        slots = _slots(ray, cfg)
        if owns:
            verb = "started" if cfg.address is None else "connected to"
            log(f"{verb} {_describe_address(cfg.address)} in {started - ray_started:.1f} s")
        log(f"{len(todo)} of {len(archive)} videos to run ({skipped} done before) on {_describe_address(cfg.address)}, "
            f"{slots} at a time, {cfg.cpus_per_task:g} CPU and {cfg.gpus_per_task:g} GPU each")
        task = ray.remote(process_video).options(
            num_cpus=cfg.cpus_per_task, num_gpus=cfg.gpus_per_task, max_retries=cfg.retries, retry_exceptions=False
        )
        job_ref = ray.put(job)
        queue, in_flight = collections.deque(todo), {}
        saver = _Saver(manifest)
        with _Progress(len(todo), progress, console) as bar:
            try:
                while queue or in_flight:
                    while queue and len(in_flight) < slots:
                        key = queue.popleft()
                        entry = manifest.videos[key]
                        manifest.mark_running(key)
                        in_flight[task.remote(key, entry.name, str(out), job_ref)] = key
                        saver.save()
                    ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                    for ref in ready:
                        key = in_flight.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except ray.exceptions.RayError as exc:
                            outcome = {"ok": False, "error": _error_line(key, exc, ray)}
                        if outcome["ok"]:
                            manifest.mark_done(key, outcome["row"])
                            result.done += 1
                            result.frames += outcome["row"]["frames"]
                            bar.update(outcome["row"]["frames"], True)
                        else:
                            manifest.mark_failed(key, outcome["error"])
                            result.failed += 1
                            result.failures.append((key, manifest.videos[key].error))
                            bar.update(0, False)
                        saver.save()
                    bar.update()
                manifest.save()
            except KeyboardInterrupt:
                for ref, key in in_flight.items():
                    ray.cancel(ref, force=True)
                    manifest.videos[key].state = "pending"  # not its fault: the next run redoes it
                manifest.save()
                write_summary(manifest, out)
                raise
    finally:
        if owns:
            ray.shutdown()
    _clean_partials(out)  # a retried video's dead first attempt
    result.elapsed_s = time.perf_counter() - started
    result.summary_csv, result.summary_html = write_summary(manifest, out)
    return result
