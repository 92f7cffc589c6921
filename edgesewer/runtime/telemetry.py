"""Distance telemetry from the crawler: JSON lines `{"t": SECONDS, "distance_m": METRES}`.

From a file (`--telemetry log.jsonl`): `t` is seconds on the video's clock, the first frame at 0.
From the network (`--telemetry udp://HOST:PORT`): one or more lines per datagram, `t` on the robot's
own clock. A thread receives them, so the detector never waits for the network. The robot's clock is
mapped onto ours by the smallest (arrival - t) seen so far: the fastest datagram's delay is the best
estimate of the clock offset, and later, slower ones cannot make it worse.

A frame gets the distance linearly interpolated between the samples around its time; a frame newer
than the newest sample, by up to `max_hold_s`, gets it extrapolated at the last two samples' speed.
Between samples more than `max_gap_s` apart, or later than that, it gets None: telemetry has dropped
out there, and the caller falls back to OCR.
"""

from __future__ import annotations

import bisect
import json
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgesewer.errors import EdgesewerError

MAX_SAMPLES = 20_000  # a live track keeps this many samples (minutes at 50 Hz); frames only ask about now


def parse_sample(line: str) -> tuple[float, float] | None:
    """`{"t": 1.5, "distance_m": 2.34}` -> (1.5, 2.34); None when the line is not such an object."""
    try:
        data = json.loads(line)
        t, d = float(data["t"]), float(data["distance_m"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return (t, d) if math.isfinite(t) and math.isfinite(d) else None


class TelemetryTrack:
    """Time-sorted (t, distance) samples with interpolation; safe to add from one thread and read from another."""

    def __init__(self, max_gap_s: float = 2.0, max_hold_s: float = 0.5) -> None:
        self.max_gap_s, self.max_hold_s = max_gap_s, max_hold_s
        self._t: list[float] = []
        self._d: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._t)

    def add(self, t: float, distance: float) -> None:
        with self._lock:
            i = bisect.bisect_right(self._t, t)  # datagrams may arrive out of order
            self._t.insert(i, t)
            self._d.insert(i, distance)
            if len(self._t) > 2 * MAX_SAMPLES:
                del self._t[:MAX_SAMPLES], self._d[:MAX_SAMPLES]

    def at(self, t: float) -> float | None:
        with self._lock:
            i = bisect.bisect_right(self._t, t)
            if i == 0:
                return None  # before the first sample
            t0, d0 = self._t[i - 1], self._d[i - 1]
            if i == len(self._t):  # newer than the newest sample (datagrams lag the camera): carry on at its speed
                if t - t0 > self.max_hold_s:
                    return None
                if i >= 2 and 0 < t0 - self._t[i - 2] <= self.max_gap_s:
                    return d0 + (d0 - self._d[i - 2]) * (t - t0) / (t0 - self._t[i - 2])
                return d0
            t1, d1 = self._t[i], self._d[i]
        if t1 - t0 > self.max_gap_s:
            return None
        return d0 if t1 == t0 else d0 + (d1 - d0) * (t - t0) / (t1 - t0)


class TelemetryReader:
    """Distance by frame time from a telemetry file or UDP stream (see the module docstring)."""

    source = "telemetry"

    def __init__(self, uri: str, track: TelemetryTrack) -> None:
        self.uri, self.track = uri, track

    def at(self, frame_time: float, image: Any = None) -> float | None:
        return self.track.at(frame_time)

    def describe(self) -> dict[str, Any]:
        return {"telemetry": self.uri, "telemetry_samples": len(self.track)}

    def close(self) -> None:
        pass


class TelemetryFile(TelemetryReader):
    def __init__(self, path: str | Path, max_gap_s: float = 2.0, max_hold_s: float = 0.5) -> None:
        path = Path(path)
        track = TelemetryTrack(max_gap_s, max_hold_s)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise EdgesewerError(f"--telemetry {path}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgesewerError(f"--telemetry {path}: cannot read it ({exc})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            sample = parse_sample(line)
            if sample is None:
                raise EdgesewerError(
                    f'--telemetry {path} line {number}: not a JSON object like {{"t": 1.5, "distance_m": 2.34}}'
                )
            track.add(*sample)
        if not len(track):
            raise EdgesewerError(f"--telemetry {path}: no samples in it")
        super().__init__(str(path), track)


class UdpTelemetry(TelemetryReader):
    """Listens on HOST:PORT; `clock_origin` is the monotonic time of frame time 0 (a live source's)."""

    def __init__(self, uri: str, clock_origin: float, max_gap_s: float = 2.0, max_hold_s: float = 0.5) -> None:
        host, port = parse_udp(uri)
        super().__init__(uri, TelemetryTrack(max_gap_s, max_hold_s))
        self.clock_origin = clock_origin
        self.offset: float | None = None  # our monotonic clock minus the robot's clock
        self.malformed = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise EdgesewerError(f"--telemetry {uri}: cannot listen on {host or '0.0.0.0'}:{port} ({exc})") from None
        self._sock.settimeout(0.2)  # so that close() is noticed
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="edgesewer-telemetry", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            arrival = time.monotonic()
            for line in data.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    continue
                sample = parse_sample(line)
                if sample is None:
                    self.malformed += 1
                    continue
                t, distance = sample
                if self.offset is None or arrival - t < self.offset:
                    self.offset = arrival - t
                self.track.add(t, distance)

    def at(self, frame_time: float, image: Any = None) -> float | None:
        if self.offset is None:
            return None
        return self.track.at(frame_time + self.clock_origin - self.offset)  # frame time -> robot clock

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "telemetry_malformed": self.malformed}

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=1.0)


def parse_udp(uri: str) -> tuple[str, int]:
    """`udp://HOST:PORT` -> (host, port); an empty host listens on every interface."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or port is None:
        raise EdgesewerError(f"--telemetry {uri}: give udp://HOST:PORT, e.g. udp://0.0.0.0:5600")
    return parts.hostname or "", port


def open_telemetry(spec: str, clock_origin: float | None) -> TelemetryReader:
    """A file path or udp://HOST:PORT. UDP telemetry needs a live source: only its frames have a clock to match."""
    if spec.startswith("udp://"):
        if clock_origin is None:
            raise EdgesewerError(
                f"--telemetry {spec}: live telemetry needs a live source (camera or stream); "
                "for a video file give the robot's recorded JSON-lines file"
            )
        return UdpTelemetry(spec, clock_origin)
    if "://" in spec:
        raise EdgesewerError(f"--telemetry {spec}: give a JSON-lines file or udp://HOST:PORT")
    return TelemetryFile(spec)
