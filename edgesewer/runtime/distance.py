"""Distance along the pipe for every frame: from the robot's telemetry when it sends it, otherwise from
the counter burnt into the picture (OCR), otherwise unknown.

Telemetry wins over OCR: it is the crawler's own odometer, where OCR is a guess at small text.
OCR reads are noisy (a 5 read as 6, a leading digit dropped), so they go through `MonotoneDistance`,
which keeps the track the recent reads agree on, rejects reads that go backwards or jump further than
the crawler can drive, and extrapolates at the measured speed between reads. A Tesseract call takes
about 100 ms, so OCR runs on every `every`-th frame only (on every frame until the first track is
found); on a live source in a thread of its own, so that a slow read never holds up the detector.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from edgesewer.errors import EdgesewerError

DISTANCE_MODES = ("ocr", "none")
DEFAULT_OCR_EVERY = 5


class DistanceReader(Protocol):
    """What the pipeline asks of a distance source."""

    source: str  # "ocr" | "telemetry": what events and the report name as the distance's origin

    def at(self, time: float, image: np.ndarray) -> float | None:
        """The distance at this frame (its time in the source's clock), or None when this reader has none."""

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class MonotoneDistance:
    """Noisy counter reads at times t -> a distance that only grows or holds.

    A read is accepted when it is no more than `tolerance_m` behind the last accepted one, no further
    ahead than `max_speed_m_s` allows, and within `tolerance_m + speed_slack_m_s * dt` of where the
    track predicts it (so a misread tenths digit is caught too). A rejected read still counts: the
    track restarts on the largest group of mutually consistent reads of the last `window_s` seconds
    when that group is larger than the current track's support and has at least `confirm` reads.
    That is how the first track is found, and how a track started on misreads is dropped.
    With `unwrap_metres`, a read whose whole metres are wrong but whose decimals fall within
    `tolerance_m` of the prediction is taken with the track's metres: OCR loses leading digits far more
    often than decimals (a lost "3" turns 31.36 into 1.36). Such a read still votes with its own value.
    Between reads the estimate moves on at the track's speed for up to `max_extrapolate_s`, then holds.
    """

    def __init__(
        self,
        max_speed_m_s: float = 1.0,
        tolerance_m: float = 0.05,
        speed_slack_m_s: float = 0.25,
        confirm: int = 3,
        window_s: float = 4.0,
        max_extrapolate_s: float = 1.0,
        unwrap_metres: bool = True,
    ) -> None:
        self.max_speed, self.tol, self.slack = max_speed_m_s, tolerance_m, speed_slack_m_s
        self.unwrap_metres = unwrap_metres
        self.confirm, self.window_s, self.max_extrapolate_s = max(1, confirm), window_s, max_extrapolate_s
        self._reads: deque[tuple[float, float]] = deque()  # every read of the last window_s, accepted or not
        self._track: deque[tuple[float, float]] = deque()  # accepted reads of the last window_s
        self._speed = 0.0
        self._last_out: float | None = None
        self.accepted = self.rejected = 0

    @property
    def locked(self) -> bool:
        return bool(self._track)

    def _consistent(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Could the crawler read `a` and then `b` (or b then a) without reversing or speeding?"""
        (t1, d1), (t2, d2) = sorted((a, b))
        return -self.tol <= d2 - d1 <= self.max_speed * (t2 - t1) + self.tol

    def _predict(self, t: float) -> float:
        t_last, d_last = self._track[-1]
        return d_last + self._speed * min(max(0.0, t - t_last), self.max_extrapolate_s)

    def _fits_track(self, t: float, d: float) -> bool:
        t_last, d_last = self._track[-1]
        dt = max(0.0, t - t_last)
        if not d_last - self.tol <= d <= d_last + self.max_speed * dt + self.tol:
            return False
        return abs(d - self._predict(t)) <= self.tol + self.slack * dt

    def _update_speed(self) -> None:
        (t0, d0), (t1, d1) = self._track[0], self._track[-1]
        if t1 - t0 >= 0.3:  # shorter baselines turn the counter's 0.01 m steps into speed noise
            self._speed = min(max(0.0, (d1 - d0) / (t1 - t0)), self.max_speed)

    def _forget(self, t: float) -> None:
        for reads in (self._reads, self._track):
            while len(reads) > 1 and reads[0][0] < t - self.window_s:
                reads.popleft()

    def observe(self, t: float, reading: float | None) -> bool:
        """Feed one read (None: nothing legible); True when it was accepted into the track."""
        if reading is None:
            return False
        read = (float(t), float(reading))
        self._reads.append(read)
        self._forget(read[0])
        if self._track and self._fits_track(*read):
            self._append(read)
            return True
        decimals = self._decimals_fit(*read) if self._track and self.unwrap_metres else None
        if decimals is not None:
            self._append((read[0], decimals))
        else:
            self.rejected += 1
        self._maybe_restart()  # the read's own metres disagree with the track: they vote for another
        return decimals is not None

    def _append(self, read: tuple[float, float]) -> None:
        self._track.append((read[0], max(read[1], self._track[-1][1])))  # a little behind: hold
        self._update_speed()
        self.accepted += 1

    def _decimals_fit(self, t: float, d: float) -> float | None:
        """The read with the predicted whole metres, when its decimals match the prediction closely."""
        predicted = self._predict(t)
        fixed = d + round(predicted - d)
        return fixed if abs(fixed - predicted) <= self.tol and fixed >= self._track[-1][1] - self.tol else None

    def _maybe_restart(self) -> None:
        reads = list(self._reads)
        support = sum(1 for r in reads if self._track and self._consistent(r, self._track[-1]))
        best: list[tuple[float, float]] = []
        anchor = reads[-1]
        for candidate in reads:
            group = [r for r in reads if self._consistent(r, candidate)]
            if len(group) > len(best):
                best, anchor = group, candidate
        if len(best) < self.confirm or len(best) <= support:
            return
        old_end = self._track[-1][1] if self._track else None
        # Restart from the anchor's group up to the anchor (none of them is ahead of it by more than the
        # tolerance), then let its later reads in through the usual gate.
        best.sort()
        high, track = -np.inf, deque()
        for t, d in (r for r in best if r[0] <= anchor[0]):
            high = max(high, d)
            track.append((t, high))
        self._track, self._speed = track, 0.0
        self._update_speed()
        for read in (r for r in best if r[0] > anchor[0]):
            if self._fits_track(*read):
                self._track.append((read[0], max(read[1], self._track[-1][1])))
                self._update_speed()
        if old_end is not None and self._track[-1][1] < old_end - self.tol:
            self._last_out = None  # the old track was the misread: let the distance come back down

    def estimate(self, t: float) -> float | None:
        """The distance at time t (call with non-decreasing t); None before the first track."""
        if not self._track:
            return self._last_out
        value = self._predict(t)
        if self._last_out is not None:
            value = max(value, self._last_out)
        self._last_out = value
        return value


class OcrDistance:
    """Tesseract on every `every`-th frame into a `MonotoneDistance`; `at(time, image)` for every frame.

    `background=True` (live sources) reads in a worker thread: a frame due for a read is handed over
    only when the worker is idle, and the estimate uses whatever reads have come back.
    """

    source = "ocr"

    def __init__(self, every: int = DEFAULT_OCR_EVERY, roi: Sequence[float] | None = None,
                 background: bool = False, smoother: MonotoneDistance | None = None) -> None:
        from edgesewer.runtime.distance_ocr import CounterOcr

        if every < 1:
            raise EdgesewerError(f"--ocr-every {every}: must be at least 1")
        self.ocr = CounterOcr(roi)
        self.every = every
        self.smoother = smoother or MonotoneDistance()
        self._lock = threading.Lock()
        self._since_read: int | None = None  # frames since the last read was started
        self._legible = True  # did the last read find a counter?
        self.errors = 0  # reads that failed inside Tesseract
        self._jobs: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        if background:
            self._jobs = queue.Queue(maxsize=1)
            self._worker = threading.Thread(target=self._work, name="edgesewer-ocr", daemon=True)
            self._worker.start()

    def _due(self) -> bool:
        with self._lock:
            # Until the first track is found, every frame while the counter is legible: a quick start.
            burst = not self.smoother.locked and self._legible
        return burst or self._since_read is None or self._since_read >= self.every

    def _read(self, time: float, image: np.ndarray) -> None:
        try:
            value = self.ocr.read(image)
        except Exception:  # noqa: BLE001 - Tesseract failing on one frame must not end the inspection
            value = None
            self.errors += 1
        with self._lock:
            self._legible = value is not None
            self.smoother.observe(time, value)
            if self.smoother.locked:  # confirmed reads: the counter is where the last one was read
                self.ocr.settled = True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._read(*job)

    def at(self, time: float, image: np.ndarray) -> float | None:
        """Read this frame if one is due, then the distance at its time."""
        if self._due():
            if self._jobs is None:
                self._read(time, image)
                self._since_read = 0
            else:
                try:
                    self._jobs.put_nowait((time, image))
                    self._since_read = 0
                except queue.Full:
                    pass  # still reading an earlier frame: try again on the next one
        if self._since_read is not None:
            self._since_read += 1
        with self._lock:
            return self.smoother.estimate(time)

    def describe(self) -> dict[str, Any]:
        ms = self.ocr.ms_per_call
        return {
            "ocr_every": self.every,
            "ocr_calls": self.ocr.calls,
            "ocr_ms_per_call": round(ms, 1) if ms is not None else None,
            "ocr_reads_accepted": self.smoother.accepted,
            "ocr_reads_rejected": self.smoother.rejected,
            "ocr_errors": self.errors,
        }

    def close(self) -> None:
        if self._jobs is not None and self._worker is not None:
            try:
                self._jobs.put_nowait(None)
            except queue.Full:  # a read in progress: take its place in the queue
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    pass
                self._jobs.put_nowait(None)
            self._worker.join(timeout=2.0)


@dataclass
class FrameDistance:
    metres: float | None
    source: str | None  # "telemetry" | "ocr" | None (unknown)


class DistanceProvider:
    """Asks its readers in order (telemetry before OCR) and takes the first distance one has."""

    def __init__(self, readers: Sequence[DistanceReader]) -> None:
        self.readers = list(readers)

    def for_frame(self, time: float, image: np.ndarray) -> FrameDistance:
        for reader in self.readers:
            value = reader.at(time, image)
            if value is not None:
                return FrameDistance(round(float(value), 3), reader.source)
        return FrameDistance(None, None)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"distance": "ocr" if any(r.source == "ocr" for r in self.readers) else "none"}
        for reader in self.readers:
            info.update(reader.describe())
        return info

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def open_distance(mode: str, telemetry: str | None, *, live: bool, clock_origin: float | None,
                  ocr_every: int = DEFAULT_OCR_EVERY, roi: Sequence[float] | None = None) -> DistanceProvider | None:
    """The run's distance source from `--distance`, `--telemetry` and `--ocr-every`/`--ocr-roi`; None for neither."""
    if mode not in DISTANCE_MODES:
        raise EdgesewerError(f"--distance {mode!r}: use {' or '.join(DISTANCE_MODES)}")
    if mode == "none" and telemetry is None:
        return None
    from edgesewer.runtime.telemetry import open_telemetry

    reader = open_telemetry(telemetry, clock_origin) if telemetry else None
    try:
        ocr = OcrDistance(ocr_every, roi, background=live) if mode == "ocr" else None
    except BaseException:
        if reader is not None:
            reader.close()
        raise
    return DistanceProvider([r for r in (reader, ocr) if r is not None])
