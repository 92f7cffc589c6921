"""Source and output URIs, with jetson-inference's shorthand normalised in one place.

Sources: `0` or `/dev/video0` or `v4l2:///dev/video0` (USB/V4L2 camera), `csi://0` (Jetson MIPI
camera through nvarguscamerasrc), `rtsp://...`, `http(s)://...` (MJPEG or anything FFmpeg opens),
`gst://<pipeline ending in appsink>` (any GStreamer pipeline, e.g. hardware-decoded RTSP on a Jetson),
`file://x.mp4` or a plain path (video file, image file, image folder, or a glob such as
`frames/*.jpg`). Outputs: `display://0`, `file://out.mp4` or a path, `http://@:8080/` (MJPEG served to
browsers), `rtsp://@:8554/inspect` (H.264 over RTSP), `none`; in the served outputs `@` (or no host)
means every interface, as in jetson-inference, and `http://127.0.0.1:8080/` serves this machine only.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgesewer.errors import CaptureError, EdgesewerError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
LIVE_SCHEMES = frozenset({"v4l2", "csi", "gst", "rtsp", "rtsps", "http", "https"})
SOURCE_SCHEMES = ("v4l2", "csi", "gst", "rtsp", "rtsps", "http", "https", "file")
OUTPUT_SCHEMES = ("display", "file", "http", "rtsp", "none")
SERVED_DEFAULTS = {"http": (8080, "/"), "rtsp": (8554, "/inspect")}  # port and path when the URI leaves them out

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


@dataclass(frozen=True)
class SourceURI:
    """A parsed source.

    kind is "camera" (V4L2 index or device), "csi", "gstreamer" (a pipeline), "stream" (rtsp/http),
    "video" (a file) or "images" (one image, a folder or a glob); `location` is what OpenCV or the
    image lister opens.
    """

    text: str  # what the user typed, password masked (`redact`): the only form messages, events and reports show
    scheme: str
    kind: str
    location: str = field(repr=False)  # may hold credentials: handed to OpenCV only
    camera_index: int | None = None

    @property
    def is_live(self) -> bool:
        """Live sources deliver the newest frame only; files deliver every frame."""
        return self.scheme in LIVE_SCHEMES


@dataclass(frozen=True)
class OutputURI:
    """A parsed output: scheme "display" (window number in `location`), "file" (path), "http" / "rtsp"
    (a stream this machine serves on `host`:`port` at `path`; `location` is `host:port/path`) or "none".

    `port` 0 asks for any free port (tests); the sink reports the one it got.
    """

    text: str
    scheme: str
    location: str
    host: str = ""  # served outputs: the address to listen on, 0.0.0.0 for every interface
    port: int = 0
    path: str = ""


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s:]*)(?::([^/\s]*))?@")  # password up to the last @
_GST_SECRET = re.compile(r"\b((?:user-pw|password|passwd)\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s!]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """`rtsp://user:pass@host` -> `rtsp://user:***@host` (a lone user-info token -> `***@`), also inside
    a GStreamer pipeline, where `user-pw=...` is masked as well. Cameras' URLs carry their passwords."""

    def mask(match: re.Match) -> str:
        scheme, user, password = match.groups()
        return f"{scheme}{user}:***@" if password is not None else f"{scheme}***@"

    return _GST_SECRET.sub(lambda m: m.group(1) + "***", _USERINFO.sub(mask, text))


def _split_scheme(text: str) -> tuple[str | None, str]:
    match = _SCHEME.match(text)
    if match is None:
        return None, text
    return match.group(1).lower(), match.group(2)


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def parse_source(text: str) -> SourceURI:
    """Normalise what the user typed into a `SourceURI`; unknown schemes raise `CaptureError`."""
    text = str(text).strip()
    if not text:
        raise CaptureError("empty --source; give a camera (0, /dev/video0, csi://0), a stream URL or a file")
    scheme, rest = _split_scheme(text)
    if scheme is None:
        if text.isdigit():  # Ultralytics' webcam alias
            return SourceURI(text, "v4l2", "camera", text, camera_index=int(text))
        if text.startswith("/dev/video"):
            return _v4l2(text, text)
        return _file_source(text, text)
    if scheme == "v4l2":
        return _v4l2(text, rest)
    if scheme == "csi":
        if not rest.isdigit():
            raise CaptureError(f"{text}: csi:// takes a sensor number, e.g. csi://0")
        return SourceURI(text, "csi", "csi", gstreamer_csi_pipeline(int(rest)), camera_index=int(rest))
    if scheme == "gst":
        if "appsink" not in rest:
            raise CaptureError(f"{redact(text)}: a gst:// pipeline must end in appsink (see runtime/pipelines.md)")
        return SourceURI(redact(text), "gst", "gstreamer", rest.strip())
    if scheme in ("rtsp", "rtsps", "http", "https"):
        if not rest or rest.startswith("/"):
            raise CaptureError(f"{redact(text)}: a {scheme}:// URL needs a host, e.g. {scheme}://192.168.1.20:8554/live")
        return SourceURI(redact(text), scheme, "stream", text)
    if scheme == "file":
        return _file_source(text, rest)
    raise CaptureError(
        f"{redact(text)}: unknown source scheme {scheme}://; use one of {', '.join(s + '://' for s in SOURCE_SCHEMES)}"
    )


def _v4l2(text: str, device: str) -> SourceURI:
    if device.isdigit():
        return SourceURI(text, "v4l2", "camera", device, camera_index=int(device))
    match = re.fullmatch(r"/dev/video(\d+)", device)
    if match is None:
        raise CaptureError(f"{text}: expected a V4L2 device such as /dev/video0")
    return SourceURI(text, "v4l2", "camera", device, camera_index=int(match.group(1)))


def _file_source(text: str, path_text: str) -> SourceURI:
    if _has_glob(path_text):
        return SourceURI(text, "file", "images", path_text)
    path = Path(path_text).expanduser()
    if path.is_dir():
        return SourceURI(text, "file", "images", str(path))
    if not path.exists():
        raise CaptureError(f"{path}: no such file or folder (give a video file, an image folder or a glob)")
    kind = "images" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    return SourceURI(text, "file", kind, str(path))


def list_images(location: str) -> list[Path]:
    """The image files a folder, glob or single image names, sorted by name."""
    if _has_glob(location):
        paths = [Path(p) for p in glob.glob(location, recursive=True)]
    elif Path(location).is_dir():
        paths = list(Path(location).iterdir())
    else:
        paths = [Path(location)]
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def gstreamer_csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson MIPI CSI camera, ending in BGR frames for OpenCV's appsink.

    nvarguscamerasrc delivers NV12 in NVMM (GPU) memory; nvvidconv copies it to system memory as
    BGRx, and videoconvert drops the x. `drop=true max-buffers=1` keeps only the newest frame.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def parse_output(text: str | None) -> OutputURI:
    """`display://0`, `file://out.mp4` (or a plain path ending in a video suffix), `http://@:8080/`,
    `rtsp://@:8554/inspect`, `none`."""
    if text is None or str(text).strip().lower() in ("", "none", "none://"):
        return OutputURI("none", "none", "")
    text = str(text).strip()
    scheme, rest = _split_scheme(text)
    if scheme is None:
        if text == "display":
            return OutputURI(text, "display", "0")
        scheme, rest = "file", text
    if scheme == "display":
        if rest and not rest.isdigit():
            raise EdgesewerError(f"{text}: display:// takes a window number, e.g. display://0")
        return OutputURI(text, "display", rest or "0")
    if scheme == "file":
        suffix = Path(rest).suffix.lower()
        if suffix not in (".mp4", ".avi", ".mkv", ".mov"):
            raise EdgesewerError(f"{text}: an output video file must end in .mp4, .avi, .mkv or .mov")
        return OutputURI(text, "file", rest)
    if scheme in SERVED_DEFAULTS:
        return _served_output(text, scheme, rest)
    if scheme in ("https", "rtsps"):
        raise EdgesewerError(
            f"{_shown(text)}: {scheme}:// outputs are not served (no TLS); "
            f"use {scheme[:-1]}:// behind a TLS proxy or VPN"
        )
    raise EdgesewerError(
        f"{_shown(text)}: unknown output scheme {scheme}://; "
        "use one of display://0, file://out.mp4, http://@:8080/, rtsp://@:8554/inspect, none"
    )


_SERVED = re.compile(r"^(?:(?P<user>[^/]*)@)?(?P<host>[^:/@]*)(?::(?P<port>[^/]*))?(?P<path>/.*)?$")


def _shown(text: str) -> str:
    """An output URI as messages show it: `@` alone (every interface) is no secret, anything before it may be."""
    return text if "://@" in text or "@" not in text else redact(text)


def _served_output(text: str, scheme: str, rest: str) -> OutputURI:
    """`@:8080/`, `127.0.0.1:8080/`, `:8554/inspect`, `@` ... -> host, port and path to serve on."""
    shown = _shown(text)
    example = "http://@:8080/" if scheme == "http" else "rtsp://@:8554/inspect"
    match = _SERVED.match(rest)
    if match is None or "?" in rest or "#" in rest:
        raise EdgesewerError(f"{shown}: expected {scheme}://HOST:PORT/PATH to serve on, e.g. {example}")
    if match["user"]:
        raise EdgesewerError(
            f"{shown}: a served {scheme}:// output takes no user name or password (the stream is not protected); "
            "serve on 127.0.0.1 or behind a VPN instead"
        )
    default_port, default_path = SERVED_DEFAULTS[scheme]
    port_text = match["port"] if match["port"] is not None else str(default_port)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise EdgesewerError(f"{shown}: the port must be a number from 1 to 65535, e.g. {example}")
    host = match["host"] or "0.0.0.0"
    path = match["path"] or default_path
    if scheme == "rtsp" and path.rstrip("/") == "":
        path = default_path  # the RTSP server needs a mount name; `rtsp://@:8554` serves /inspect
    port = int(port_text)
    return OutputURI(shown, scheme, f"{host}:{port}{path}", host=host, port=port, path=path)
