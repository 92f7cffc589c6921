"""DIR/manifest.json: what the batch knows about every video, so that a rerun resumes.

Written only by the driver, always whole (temp file, fsync, rename): a killed driver leaves the
previous manifest. States: `pending` (not started), `running` (handed to a worker; a driver that died
leaves these, and a rerun redoes them), `done` (DIR/videos/<name>/ is complete), `failed` (with its
one-line error; a rerun retries it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgesewer.errors import DataError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
STATES = ("pending", "running", "done", "failed")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class VideoEntry:
    source: str  # absolute path of the video
    name: str  # DIR/videos/<name>/
    state: str = "pending"
    attempts: int = 0  # times handed to a worker (Ray's own retries of a dead worker count as one)
    error: str | None = None
    started: str | None = None
    finished: str | None = None
    row: dict[str, Any] | None = None  # the summary row of a done video (worker.summary_row)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoEntry":
        entry = cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})
        if entry.state not in STATES:
            raise DataError(f"manifest: {entry.source} has an unknown state {entry.state!r}")
        return entry


@dataclass
class Manifest:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)  # what decides the results: models and options
    videos: dict[str, VideoEntry] = field(default_factory=dict)  # source -> entry, archive order
    created: str = field(default_factory=utc_now)

    @classmethod
    def load(cls, out_dir: Path) -> "Manifest | None":
        path = Path(out_dir) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            videos = {v["source"]: VideoEntry.from_dict(v) for v in data["videos"]}
            return cls(path, data.get("config", {}), videos, data.get("created", utc_now()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a readable batch manifest ({exc}); move it away to start over") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": MANIFEST_FORMAT_VERSION,
            "created": self.created,
            "updated": utc_now(),
            "config": self.config,
            "counts": self.counts(),
            "videos": [asdict(v) for v in self.videos.values()],
        }

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for entry in self.videos.values():
            counts[entry.state] += 1
        return counts

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # --- state changes (driver only) ---
    def mark_running(self, key: str) -> None:
        entry = self.videos[key]
        entry.state, entry.attempts, entry.started, entry.error = "running", entry.attempts + 1, utc_now(), None

    def mark_done(self, key: str, row: dict[str, Any]) -> None:
        entry = self.videos[key]
        entry.state, entry.row, entry.error, entry.finished = "done", row, None, utc_now()

    def mark_failed(self, key: str, error: str) -> None:
        entry = self.videos[key]
        entry.state, entry.row, entry.finished = "failed", None, utc_now()
        entry.error = " ".join(str(error).split()) or "failed"
