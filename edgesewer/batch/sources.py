"""The archive: a folder (searched recursively), a glob, or a list file (one video path per line).

Every video gets a unique output name: its stem, or stem-<8 hex of its path> where stems collide
(the same name in two folders is common in archives: one folder per street, `0001.mp4` in each).
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgesewer.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".webm")


@dataclass(frozen=True)
class ArchiveVideo:
    path: Path  # absolute
    name: str  # folder name under DIR/videos/

    @property
    def key(self) -> str:
        return str(self.path)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _from_list(list_file: Path) -> list[Path]:
    """Non-empty lines that are not comments; relative paths are relative to the list file."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{list_file}: cannot read the list of videos ({exc})") from exc
    paths = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if not path.is_file():
            raise DataError(f"{list_file}:{number}: {text} is not a file")
        paths.append(path)
    return paths


def expand_archive(source: str | Path) -> list[Path]:
    """Video files of a folder (recursive), a glob, or a list file (a file that is not a video), sorted
    and without duplicates."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and _is_video(p) and not _hidden(p, path)]
        if not found:
            raise DataError(f"{text}: no video files in this folder (looked for {', '.join(VIDEO_SUFFIXES)})")
    elif path.is_file():
        found = [path] if _is_video(path) else _from_list(path)
        if not found:
            raise DataError(f"{text}: the list of videos is empty")
    elif any(ch in text for ch in "*?["):
        found = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
        if not found:
            raise DataError(f"{text}: the pattern matches no files")
    else:
        raise DataError(f"{text}: no such folder, file or pattern")
    unique = {p.resolve(): None for p in found}
    return sorted(unique)


def _hidden(path: Path, root: Path) -> bool:
    """Dot files and folders below the archive root (editor temp files, .Trash, our own partial output)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def name_videos(paths: list[Path], taken: dict[str, str] | None = None) -> list[ArchiveVideo]:
    """Unique folder names; `taken` (key -> name, from an earlier manifest) keeps names stable across runs."""
    taken = dict(taken or {})
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    used = set(taken.values())
    videos = []
    for p in paths:
        key = str(p)
        if key in taken:
            videos.append(ArchiveVideo(p, taken[key]))
            continue
        name = p.stem
        if stems[p.stem] > 1 or name in used:
            name = f"{p.stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        used.add(name)
        videos.append(ArchiveVideo(p, name))
    return videos
