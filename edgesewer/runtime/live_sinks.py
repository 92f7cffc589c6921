"""Served outputs for the operator's live view: `--output http://@:8080/` (MJPEG to a browser) and
`--output rtsp://@:8554/inspect` (H.264 over RTSP for VLC, ffplay or a video wall), as
jetson-inference's outputs do.

Inference never waits on a viewer. `write()` only hands the newest annotated frame over and returns:

- MJPEG: the frame goes into a one-frame slot; each viewer's thread sends the newest frame it has not
  sent yet, JPEG-encoded once per frame however many viewers there are (encoding happens in the viewers'
  threads, never in the detector's). A slow viewer skips frames; one that takes no data for
  `send_timeout_s` is disconnected.
- RTSP: the frame is pushed into a GStreamer appsrc that drops the oldest frame when the encoder or
  the network falls behind (`leaky-type=downstream`), one shared encoder for all viewers.

With nobody watching, `active` is False: the pipeline skips drawing the overlay and nothing is encoded.
"""

from __future__ import annotations

import errno
import platform
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgesewer.errors import EdgesewerError
from edgesewer.runtime.uri import OutputURI

RTSP_PACKAGES = (
    "apt-get install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-ugly libgirepository1.0-dev libcairo2-dev, then pip install 'edgesewer[live]'"
)


def _bind_error(uri: OutputURI, port: int, err: int | None, detail: str) -> EdgesewerError:
    """One line for the usual reasons a server cannot listen."""
    if err == errno.EADDRINUSE or "in use" in detail:
        return EdgesewerError(
            f"{uri.text}: port {port} is already in use (another edgesewer run or server?); choose another port"
        )
    if err == errno.EACCES or "ermission" in detail:
        return EdgesewerError(f"{uri.text}: no permission to listen on port {port} (ports below 1024 need root)")
    if err in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or "resolve" in detail or "assign" in detail:
        return EdgesewerError(
            f"{uri.text}: {uri.host} is not an address of this machine; use @ (every interface) or 127.0.0.1"
        )
    return EdgesewerError(f"{uri.text}: cannot listen on {uri.host}:{port} ({detail})")


def _view_url(scheme: str, host: str, port: int, path: str) -> str:
    """The address a viewer opens: this machine's name when serving on every interface."""
    shown = (platform.node() or "localhost") if host in ("0.0.0.0", "") else host
    return f"{scheme}://{shown}:{port}{path}"


class MjpegHttpSink:
    """`http://HOST:PORT/PATH`: multipart/x-mixed-replace JPEG frames at PATH (`/` by default).

    Browsers show it as a moving image; VLC, ffplay and OpenCV read it as an MJPEG stream. Any other path
    answers 404; more than `max_viewers` at once answer 503 (each viewer costs a thread and bandwidth on
    the robot). Frames given to `write` must not be changed afterwards (the overlay draws a new one each
    frame), since viewers encode them later.
    """

    boundary = "edgesewerframe"

    def __init__(
        self,
        uri: OutputURI,
        quality: int = 80,
        max_viewers: int = 8,
        send_timeout_s: float = 20.0,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.uri, self.quality, self.max_viewers = uri, int(quality), max_viewers
        self._on_status = on_status or (lambda message: None)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0  # frames written so far; a viewer remembers the last one it sent
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] = (0, b"")  # (seq, JPEG) of the newest encoded frame
        self._connections: set[socket.socket] = set()
        self._closed = False
        self.frames = 0  # written
        self.encoded = 0  # JPEG-encoded (at most one per written frame, only while someone watches)
        self.sent = 0  # parts sent, over all viewers

        sink = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edgesewer"
            timeout = send_timeout_s  # socket timeout: a viewer that takes nothing this long is dropped

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if urlsplit(self.path).path != sink.uri.path:
                    self.send_error(404, f"the live view is at {sink.uri.path}")
                    return
                sink._serve(self)

            def log_message(self, *args: Any) -> None:  # no access log on the robot's console
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        try:
            self._server = Server((uri.host, uri.port), Handler)
        except OSError as exc:
            raise _bind_error(uri, uri.port, exc.errno, exc.strerror or str(exc)) from None
        self.port = self._server.server_address[1]
        self.url = _view_url("http", uri.host, self.port, uri.path)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgesewer-mjpeg", daemon=True
        )
        self._thread.start()

    @property
    def viewers(self) -> int:
        with self._cond:
            return len(self._connections)

    @property
    def active(self) -> bool:
        """Someone is watching: worth drawing the overlay for."""
        return self.viewers > 0

    def write(self, image: np.ndarray) -> None:
        """Replace the newest frame and wake the viewers; never blocks on them."""
        with self._cond:
            self._image = image
            self._seq += 1
            self.frames += 1
            self._cond.notify_all()

    def _encoded(self, seq: int, image: np.ndarray) -> tuple[int, bytes]:
        """JPEG of frame `seq`, encoded by the first viewer that needs it (or a newer one already encoded)."""
        with self._encode_lock:
            if self._jpeg[0] < seq:
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    raise OSError("JPEG encoding failed")
                self._jpeg = (seq, buf.tobytes())
                self.encoded += 1
            return self._jpeg

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        conn, who = handler.connection, handler.client_address[0]
        with self._cond:
            full = len(self._connections) >= self.max_viewers or self._closed
            if not full:
                self._connections.add(conn)
                last = self._seq - 1 if self._image is not None else self._seq  # the newest frame at once
                watching = len(self._connections)
        if full:
            handler.send_error(503, f"at most {self.max_viewers} viewers at once")
            return
        self._on_status(f"live view: {who} connected ({watching} watching)")
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={self.boundary}")
            handler.send_header("Cache-Control", "no-cache, no-store")
            handler.send_header("Pragma", "no-cache")
            handler.send_header("Connection", "close")
            handler.end_headers()
            while True:
                with self._cond:
                    while self._seq == last and not self._closed:
                        self._cond.wait(timeout=1.0)
                    if self._closed:
                        return
                    seq, image = self._seq, self._image
                last, data = self._encoded(seq, image)
                handler.wfile.write(
                    b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                    % (self.boundary.encode(), len(data), data)
                )
                with self._cond:
                    self.sent += 1
        except OSError:  # the viewer left, or took nothing for send_timeout_s
            pass
        finally:
            with self._cond:
                self._connections.discard(conn)
                watching = len(self._connections)
                if not watching:  # the pipeline stops drawing: forget the frame rather than show it stale later
                    self._image = None
            if not self._closed:
                self._on_status(f"live view: {who} left ({watching} watching)")

    def close(self) -> None:
        """Stop serving and disconnect every viewer (also one stuck in a send)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        self._server.server_close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2.0)


def _import_gstreamer(uri: OutputURI) -> tuple[Any, Any, Any]:
    """Gst, GstRtspServer and GLib through PyGObject, or a one-line error saying what to install."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:  # no PyGObject, or no typelib for the RTSP server
        raise EdgesewerError(
            f"{uri.text}: RTSP output needs GStreamer's RTSP server and PyGObject ({exc}); {RTSP_PACKAGES}; "
            "or serve MJPEG with --output http://@:8080/"
        ) from None
    Gst.init(None)
    return Gst, GstRtspServer, GLib


# Encoders in order of preference: (element that must exist, launch fragment after videoconvert).
# key-int-max / the GOP: a viewer joining the shared stream gets a picture within a second.
RTSP_ENCODERS = (
    (
        "x264enc",
        "video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
        "bitrate={kbps} ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1",
    ),
    (
        "openh264enc",
        "video/x-raw,format=I420 ! openh264enc complexity=low gop-size={gop} bitrate={bps} ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=1",
    ),
    # JPEG samples are full range (JFIF): without colorimetry=1:4:0:0 (full-range BT.601) greys come out washed out.
    ("jpegenc", "video/x-raw,format=I420,colorimetry=1:4:0:0 ! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26"),
)


class RtspSink:
    """`rtsp://HOST:PORT/PATH`: GStreamer's RTSP server, fed by an appsrc, H.264 (x264enc, else openh264enc)
    or, without an H.264 encoder, RTP/JPEG.

    The GLib main loop runs in its own thread. The first frame's size is the stream's (a viewer that
    connects earlier waits for it; later frames of another size are resized). All viewers share one
    encoder (a shared media); frames are encoded only while at least one viewer is connected.
    Needs the Debian packages and PyGObject named in RTSP_PACKAGES (a one-line error says so).
    """

    def __init__(
        self,
        uri: OutputURI,
        fps: float,
        kbps: int = 2000,
        on_status: Callable[[str], None] | None = None,
        encoder: str | None = None,
    ) -> None:
        """`encoder`: one of RTSP_ENCODERS' elements (default: the first one GStreamer has)."""
        Gst, GstRtspServer, GLib = _import_gstreamer(uri)
        self._Gst, self._GLib, self._GstRtspServer = Gst, GLib, GstRtspServer
        self.uri = uri
        self.fps = fps if fps and fps > 0 else 25.0
        self.kbps = kbps
        self._on_status = on_status or (lambda message: None)
        found = [
            (name, fragment)
            for name, fragment in RTSP_ENCODERS
            if (encoder is None or name == encoder) and Gst.ElementFactory.find(name)
        ]
        if not found or not all(Gst.ElementFactory.find(e) for e in ("appsrc", "videoconvert")):
            wanted = encoder or ", ".join(name for name, _ in RTSP_ENCODERS)
            raise EdgesewerError(f"{uri.text}: GStreamer has no usable encoder ({wanted}); {RTSP_PACKAGES}")
        self.encoder, self._fragment = found[0]
        self._lock = threading.Lock()
        self._appsrc: Any = None  # set while a media (viewers) exists
        self._size: tuple[int, int] | None = None  # (width, height) of the first frame: the stream's size
        self._factory: Any = None
        self._closed = False
        self.frames = 0  # written
        self.pushed = 0  # handed to the encoder (someone was watching)

        self._context = GLib.MainContext.new()
        self._server = GstRtspServer.RTSPServer.new()
        self._server.set_address(uri.host)
        self._server.set_service(str(uri.port))
        try:
            self._source = self._server.create_source(None)
        except GLib.Error as exc:
            raise _bind_error(uri, uri.port, None, exc.message) from None
        self._source.attach(self._context)
        self._mount()
        self.port = self._server.get_bound_port()
        self.url = _view_url("rtsp", uri.host, self.port, uri.path)
        self._server.connect("client-connected", self._on_client)
        # Sessions of vanished viewers (no keep-alive within the session timeout, 60 s) are removed, so that
        # the shared stream stops encoding: GStreamer leaves that to the application.
        sessions = self._server.get_session_pool()
        cleanup = GLib.timeout_source_new_seconds(2)
        cleanup.set_callback(lambda *_: sessions.cleanup() >= 0)  # True: keep the timer
        cleanup.attach(self._context)
        self._cleanup = cleanup
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._run_loop, name="edgesewer-rtsp", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        self._context.push_thread_default()
        try:
            self._loop.run()
        finally:
            self._context.pop_thread_default()

    @property
    def active(self) -> bool:
        with self._lock:
            return self._appsrc is not None

    def _launch(self) -> str:
        encode = self._fragment.format(gop=max(1, round(self.fps)), kbps=self.kbps, bps=self.kbps * 1000)
        # appsrc: never blocks the caller, keeps at most 2 frames and drops the oldest when behind;
        # its caps (the frame size) are set with the first frame.
        return (
            "( appsrc name=src is-live=true do-timestamp=true format=time block=false max-buffers=2 "
            "leaky-type=downstream "
            "! queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 "
            f"! videoconvert ! {encode} )"
        )

    def _caps(self) -> Any:
        width, height = self._size
        num, den = round(self.fps * 1000), 1000
        return self._Gst.Caps.from_string(f"video/x-raw,format=BGR,width={width},height={height},framerate={num}/{den}")

    def _mount(self) -> None:
        factory = self._GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(self._launch())
        factory.set_shared(True)  # one pipeline and one encoder for every viewer
        factory.connect("media-configure", self._on_media_configure)
        self._server.get_mount_points().add_factory(self.uri.path, factory)
        self._factory = factory

    def _on_client(self, server: Any, client: Any) -> None:
        who = client.get_connection().get_ip()
        self._on_status(f"live view: RTSP viewer {who} connected")
        client.connect("closed", lambda c: self._on_status(f"live view: RTSP viewer {who} left"))

    def _on_media_configure(self, factory: Any, media: Any) -> None:
        appsrc = media.get_element().get_by_name("src")
        media.connect("unprepared", self._on_unprepared)
        with self._lock:
            if self._size is not None:
                appsrc.set_property("caps", self._caps())
            self._appsrc = appsrc  # a viewer that came before the first frame waits for it

    def _on_unprepared(self, media: Any) -> None:
        with self._lock:
            if self._appsrc is not None and media.get_element().get_by_name("src") is self._appsrc:
                self._appsrc = None

    def write(self, image: np.ndarray) -> None:
        """Push the frame to the encoder when someone watches; never blocks (the appsrc drops old frames)."""
        self.frames += 1
        height, width = image.shape[:2]
        with self._lock:
            if self._size is None:
                self._size = (width, height)
                if self._appsrc is not None:
                    self._appsrc.set_property("caps", self._caps())
            appsrc = self._appsrc
        if (width, height) != self._size:  # a reconnected camera in another mode: keep the stream's size
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        if appsrc is None:
            return
        appsrc.emit("push-buffer", self._Gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes()))
        self.pushed += 1

    def close(self) -> None:
        """End the stream for the viewers, disconnect them and stop the server thread."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            appsrc, self._appsrc = self._appsrc, None
        if appsrc is not None:
            appsrc.emit("end-of-stream")
        done = threading.Event()

        def shut_down(*_: Any) -> bool:
            self._server.client_filter(lambda server, client: self._GstRtspServer.RTSPFilterResult.REMOVE)
            self._server.get_mount_points().remove_factory(self.uri.path)
            self._source.destroy()
            self._cleanup.destroy()
            self._loop.quit()
            done.set()
            return False  # run once

        idle = self._GLib.idle_source_new()
        idle.set_callback(shut_down)
        idle.attach(self._context)
        done.wait(timeout=3.0)
        self._thread.join(timeout=2.0)
