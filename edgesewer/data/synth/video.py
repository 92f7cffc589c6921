"""Inspection videos: the crawler drives down one pipe at a steady speed past a few defects.

The whole pipe is one long unrolled wall with joints every few radii; each defect is fixed at a
position along it, so it grows out of the vanishing point, passes, and slides out of the frame
like in real footage. Ground truth per frame is what is "in view": the defect's anchor is inside
the frame and between `Z_EXIT` and `Z_ENTER` radii ahead of the camera.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgesewer.data.synth.catalog import JOINT_CODES, KINDS, sample_angle
from edgesewer.data.synth.defects import Defect, Site
from edgesewer.data.synth.geometry import Z_FAR, Camera
from edgesewer.data.synth.overlay import METRES_PER_RADIUS, distance_text, sample_overlay
from edgesewer.data.synth.scene import Layers, render, sample_camera, sample_look
from edgesewer.data.synth.still import water_depth_of
from edgesewer.data.synth.textures import strip_width_for
from edgesewer.data.synth.wall import build_wall, pick_material
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES

Z_ENTER = 3.5  # radii: from here on a defect is big enough to count as in view
Z_EXIT = 0.35  # radii: closer than this it is passing under / beside the lens
VIDEO_WATER_LEVELS = (0, 2, 5, 10)  # low flow, so deposits and obstacles stay visible
_PAIRS = (("FS", "RO"), ("FS", "IN"), ("RO", "IN"), ("RB", "OB"), ("AF", "FO"))


@dataclass
class VideoResult:
    mp4: Path
    json: Path
    n_frames: int
    segments: list[dict]


def plan_events(rng: np.random.Generator, travel: float, speed: float, joints: np.ndarray,
                code_order: list[str]) -> list[tuple[float, tuple[str, ...]]]:
    """(pipe position, codes) of each event: a few per 10 s, separated by stretches of normal pipe."""
    events: list[tuple[float, tuple[str, ...]]] = []
    pos = Z_ENTER + speed * rng.uniform(0.5, 1.5)
    while pos < travel + Z_ENTER - speed * 1.0 and code_order:
        codes: tuple[str, ...] = (code_order.pop(0),)
        if rng.random() < 0.2:
            partner = [b if a == codes[0] else a for a, b in _PAIRS if codes[0] in (a, b)]
            if partner:
                codes = codes + (str(rng.choice(partner)),)
        if JOINT_CODES & set(codes):
            ahead = joints[joints >= pos]
            pos = float(ahead[0]) if len(ahead) else pos
        events.append((pos, codes))
        pos += rng.uniform(5.0, 8.0)
    return events


def make_event_defects(rng: np.random.Generator, pos: float, codes: tuple[str, ...],
                       water_depth: float) -> list[Defect]:
    """The defects of one event at pipe position `pos`, on different sides of the pipe."""
    placed: list[Defect] = []
    for code in codes:
        kind = KINDS[code]
        if kind.where == "floor":
            site = Site(math.pi / 2, pos + 0.9 * len(placed), water_depth)
        else:
            theta = sample_angle(rng, code)
            for _ in range(30):  # keep off the water and away from the partner defect
                clash = any(abs((theta - d.theta + math.pi) % (2 * math.pi) - math.pi) < 0.9 for d in placed)
                if math.sin(theta) < 1.0 - water_depth - 0.15 and not clash:
                    break
                theta = sample_angle(rng, code)
            site = Site(theta, pos, water_depth)
        defect = kind.make(rng, site)
        if defect.deformation is not None:  # shorter than in stills so it stays in view ~1-3 s
            d = defect.deformation
            defect.deformation = dataclasses.replace(d, end=d.start + rng.uniform(1.0, 2.0))
        placed.append(defect)
    return placed


def in_view(defect: Defect, camera: Camera, cam_pos: float) -> bool:
    """Is the defect's anchor visible and at a recognisable distance from this camera position?"""
    if defect.deformation is not None:
        d = defect.deformation
        return d.start - cam_pos <= Z_ENTER and d.end - cam_pos >= Z_EXIT
    z_rel = defect.z - cam_pos
    if not Z_EXIT <= z_rel <= Z_ENTER:
        return False
    x, y = defect.view_point or (math.cos(defect.theta), math.sin(defect.theta))
    u, v = camera.project(x, y, z_rel)
    return bool(0 <= u < camera.width and 0 <= v < camera.height)


def segments_of(frames: list[list[str]]) -> list[dict]:
    """Runs of consecutive frames in which each code is in view (inclusive frame indices)."""
    segments = []
    for code in SEWER_CODES:
        start = None
        for i, codes in enumerate(frames + [[]]):
            if code in codes and start is None:
                start = i
            elif code not in codes and start is not None:
                segments.append({"code": code, "start_frame": start, "end_frame": i - 1})
                start = None
    return sorted(segments, key=lambda s: (s["start_frame"], s["code"]))


def render_video(out_dir: Path, name: str, seed: int, seconds: float = 20.0, fps: int = 25,
                 size: tuple[int, int] = (320, 256), code_order: list[str] | None = None,
                 advance: Callable[[], None] | None = None) -> VideoResult:
    """Write `<name>.mp4`, `<name>.json` (per-frame ground truth) and `<name>_masks/` (crack masks)."""
    rng = np.random.default_rng([seed, 0xF11E])
    width, height = size
    n_frames = max(1, int(round(seconds * fps)))
    speed = rng.uniform(1.6, 2.4)  # radii per second
    travel = speed * (n_frames - 1) / fps
    water_level = int(rng.choice(VIDEO_WATER_LEVELS))
    depth = water_depth_of(water_level)
    camera = sample_camera(rng, width, height, depth)
    look = sample_look(rng)
    overlay = sample_overlay(rng)
    spacing = rng.uniform(2.5, 4.0)
    joints = rng.uniform(0.5, 2.0) + spacing * np.arange(int((travel + Z_FAR) / spacing) + 2)
    order = list(code_order) if code_order is not None else [str(c) for c in rng.permutation(SEWER_CODES)]
    events = plan_events(rng, travel, speed, joints, order)
    defects = [d for pos, codes in events for d in make_event_defects(rng, pos, codes, depth)]
    has_crack = any(d.crack for d in defects)
    wall = build_wall(rng, strip_width_for(width), pick_material(rng, lined=any(d.code == "OS" for d in defects)),
                      travel + Z_FAR + 2.0, 0.0, joints, track_cracks=has_crack)
    for d in defects:
        if d.paint is not None:
            d.paint(wall)

    mp4 = out_dir / f"{name}.mp4"
    masks_dir = out_dir / f"{name}_masks"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise DataError(f"{mp4}: OpenCV cannot write mp4v video here (no FFmpeg backend?)")
    frames: list[list[str]] = []
    try:
        for i in range(n_frames):
            cam_pos = speed * i / fps
            frame_rng = np.random.default_rng([seed, 0xF11E, i])
            near = [d for d in defects if -1.0 < d.z - cam_pos < Z_FAR or d.deformation is not None]
            layers = Layers(
                deformations=[d.deformation for d in near if d.deformation is not None],
                mounds=[d.mound for d in near if d.mound is not None],
                view_ops=[(d.z, d.view_op) for d in near if d.view_op is not None],
            )
            frame = render(wall, camera, look, cam_pos, depth, layers, overlay, frame_rng, flow=-0.6 * i / fps)
            writer.write(frame.image)
            codes_now = sorted({d.code for d in defects if in_view(d, camera, cam_pos)}, key=SEWER_CODES.index)
            frames.append(codes_now)
            if "RB" in codes_now and frame.crack_mask is not None:
                masks_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(masks_dir / f"{i:06d}.png"), frame.crack_mask)
            if advance is not None:
                advance()
    finally:
        writer.release()
    masks_dir.mkdir(parents=True, exist_ok=True)  # present even when no frame shows a crack
    segments = segments_of(frames)
    truth = {
        "fps": fps, "width": width, "height": height, "n_frames": n_frames, "codes": list(SEWER_CODES),
        "frames": frames, "segments": segments, "crack_masks": masks_dir.name,
        "speed_m_per_s": round(speed * METRES_PER_RADIUS, 4), "water_level": water_level,
        "events": [{"codes": list(codes), "position_m": round(pos * METRES_PER_RADIUS + overlay.start_m, 3)}
                   for pos, codes in events],
        # The distance counter burnt into each frame, exactly as drawn (metres, 2 decimals): OCR truth.
        "distance_m": [float(distance_text(overlay, speed * i / fps)) for i in range(n_frames)],
        "overlay_top": overlay.top,  # where the text block is: top-left or bottom-left
    }
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(truth) + "\n")
    return VideoResult(mp4, json_path, n_frames, segments)
