"""Synthetic sewer: ray geometry, in-view logic, video segments and label sampling (hand-computed cases)."""

import math

import numpy as np
import pytest

from edgesewer.data.synth.catalog import CONNECTION_CODES, KINDS
from edgesewer.data.synth.defects import Defect
from edgesewer.data.synth.geometry import Camera, Deformation, Mound, solve_floor, solve_wall
from edgesewer.data.synth.sampling import (
    WATER_LEVELS,
    sample_labels,
    sample_water_levels,
    split_validation,
)
from edgesewer.data.synth.video import Z_ENTER, Z_EXIT, in_view, segments_of
from edgesewer.taxonomy import SEWER_CODES

# 3x3 pixels, focal 1, vanishing point in the middle: pixel centres have slopes -1, 0, +1.
TINY = Camera(width=3, height=3, focal=1.0, vpx=1.5, vpy=1.5)


def test_wall_depth_and_angle_of_a_centred_camera():
    hit = solve_wall(TINY)
    # Ray (1, 0, 1) meets the unit circle at depth 1, on the right (theta 0).
    assert hit.z[1, 2] == pytest.approx(1.0)
    assert hit.theta[1, 2] == pytest.approx(0.0)
    # Ray (0, 1, 1): depth 1, at the invert (theta pi/2, y is down).
    assert hit.z[2, 1] == pytest.approx(1.0)
    assert hit.theta[2, 1] == pytest.approx(math.pi / 2)
    # Diagonal ray (1, 1, 1): |(z, z)| = 1 at z = 1/sqrt(2), angle 45 degrees.
    assert hit.z[2, 2] == pytest.approx(1 / math.sqrt(2))
    assert hit.theta[2, 2] == pytest.approx(math.pi / 4)
    # The centre pixel looks down the axis: clamped to the far limit.
    assert hit.z[1, 1] == pytest.approx(12.0)


def test_offset_camera_sees_the_near_wall_sooner():
    low = Camera(width=3, height=3, focal=1.0, vpx=1.5, vpy=1.5, cy=0.5)  # half a radius below the axis
    hit = solve_wall(low)
    # Looking down (0, 1): from y = 0.5 the wall at y = 1 is 0.5 away.
    assert hit.z[2, 1] == pytest.approx(0.5)
    # Looking up (0, -1): 1.5 away.
    assert hit.z[0, 1] == pytest.approx(1.5)


def test_deformation_squashes_the_section_along_its_axis():
    squash = Deformation(start=-10.0, end=100.0, strength=0.3, angle=math.pi / 2, ramp=0.1)
    hit = solve_wall(TINY, deform=squash)
    # Vertical semi-axis 1 - 0.3 = 0.7; horizontal 1 + 0.15 = 1.15.
    assert hit.z[2, 1] == pytest.approx(0.7, abs=1e-4)
    assert hit.z[1, 2] == pytest.approx(1.15, abs=1e-4)


def test_water_plane_is_hit_before_the_wall():
    wall = solve_wall(TINY)
    floor = solve_floor(TINY, wall, water_depth=0.5, mounds=[])
    # Ray (0, 1) meets the surface y = 0.5 at depth 0.5, before the wall (depth 1).
    assert floor.kind[2, 1] == 1
    assert floor.t[2, 1] == pytest.approx(0.5)
    # Ray (1, 1) meets y = 0.5 at 0.5 < wall depth 0.707: water too; ray (1, 0) never goes down.
    assert floor.kind[2, 2] == 1 and floor.t[2, 2] == pytest.approx(0.5)
    assert floor.kind[1, 2] == 0


def test_mound_is_hit_where_it_rises_above_the_ray():
    cam = Camera(width=3, height=3, focal=1.0, vpx=1.5, vpy=1.5)
    wall = solve_wall(cam)
    # A flat-topped-enough heap 0.6 high at depth 0.8 right under the ray (0, 1): surface at y = 0.4
    # near the peak, where the ray is at y = z; it enters the heap shortly before 0.8.
    heap = Mound(center=0.8, length=2.0, height=0.6, half_width=5.0)
    floor = solve_floor(cam, wall, 0.0, [heap], steps=200)
    assert floor.kind[2, 1] == 2
    t = floor.t[2, 1]
    assert 0.4 < t < 0.8
    assert t == pytest.approx(1.0 - heap.height_at(np.array(0.0), np.array(t)), abs=0.02)


def test_project_inverts_the_ray_slopes():
    cam = Camera(width=320, height=256, focal=100.0, vpx=160.0, vpy=128.0)
    u, v = cam.project(1.0, 0.0, 2.0)
    assert (u, v) == (pytest.approx(210.0), pytest.approx(128.0))
    rolled = Camera(width=320, height=256, focal=100.0, vpx=160.0, vpy=128.0, roll=math.pi / 2)
    u, v = rolled.project(1.0, 0.0, 2.0)  # a quarter turn moves "right" to "up" in the image
    assert (u, v) == (pytest.approx(160.0), pytest.approx(78.0))


def test_in_view_window_and_frame_edges():
    cam = Camera(width=320, height=256, focal=100.0, vpx=160.0, vpy=128.0)
    right = Defect("GR", theta=0.0, z=10.0, extent=0.3)
    # The wall point on the right projects to u = 160 + 100 / z_rel: inside while z_rel > 100/160.
    assert not in_view(right, cam, cam_pos=10.0 - (Z_ENTER + 0.1))  # too far still
    assert in_view(right, cam, cam_pos=10.0 - Z_ENTER)
    assert in_view(right, cam, cam_pos=10.0 - 0.7)  # u = 302.9
    assert not in_view(right, cam, cam_pos=10.0 - 0.6)  # u = 326.7: slid out of the frame
    top = Defect("BE", theta=3 * math.pi / 2, z=10.0, extent=0.3)  # crown: v = 128 - 100 / z_rel
    assert not in_view(top, cam, cam_pos=10.0 - 0.7)  # v = -14.9
    assert in_view(top, cam, cam_pos=10.0 - 0.8)  # v = 3
    squash = Defect("DE", 0.0, 10.0, 0.0, deformation=Deformation(10.0, 12.0, 0.3, math.pi / 2))
    assert in_view(squash, cam, 10.0 - Z_ENTER) and in_view(squash, cam, 12.0 - Z_EXIT - 0.01)
    assert not in_view(squash, cam, 12.0 - Z_EXIT + 0.01)


def test_segments_are_runs_of_frames():
    frames = [[], ["RB"], ["RB", "FS"], ["FS"], [], ["RB"]]
    assert segments_of(frames) == [
        {"code": "RB", "start_frame": 1, "end_frame": 2},
        {"code": "FS", "start_frame": 2, "end_frame": 3},
        {"code": "RB", "start_frame": 5, "end_frame": 5},
    ]
    assert segments_of([[], []]) == []


def test_every_code_has_a_painter():
    assert tuple(KINDS) == SEWER_CODES
    assert CONNECTION_CODES == {"GR", "PH", "PB", "OS", "OP", "OK"}


def test_label_frequencies_are_long_tailed_but_never_tiny():
    labels = sample_labels(2000, np.random.default_rng(0))
    counts = dict(zip(SEWER_CODES, labels.sum(axis=0)))
    normal = 1.0 - labels.any(axis=1).mean()
    assert 0.45 < normal < 0.55
    assert min(counts.values()) >= 50  # >= ~3% of 2000 images for every class
    assert counts["FS"] > 2 * counts["OS"]  # long tail: the most common is over twice the rarest
    per_image = labels.sum(axis=1)
    assert set(np.unique(per_image[per_image > 0])) == {1, 2, 3}
    connection_cols = [SEWER_CODES.index(c) for c in CONNECTION_CODES]
    assert labels[:, connection_cols].sum(axis=1).max() == 1  # one side connection at most


def test_every_class_present_in_a_small_set():
    for seed in range(5):
        labels = sample_labels(60, np.random.default_rng(seed))
        assert labels.sum(axis=0).min() >= 1


def test_water_levels_low_where_deposits_must_show():
    rng = np.random.default_rng(1)
    labels = sample_labels(3000, rng)
    levels = sample_water_levels(labels, rng)
    assert set(np.unique(levels)) <= set(WATER_LEVELS.tolist())
    floor = labels[:, [SEWER_CODES.index("AF"), SEWER_CODES.index("FO")]].any(axis=1)
    assert levels[floor].max() <= 10
    assert levels[~floor].max() >= 30


def test_validation_split_is_stratified():
    rng = np.random.default_rng(2)
    labels = sample_labels(2000, rng)
    is_val = split_validation(labels, 0.2, rng)
    assert is_val.sum() == 400
    share = labels[is_val].sum(axis=0) / labels.sum(axis=0)
    assert np.all(np.abs(share - 0.2) < 0.03)
    # A class seen once stays in training; seen twice, one copy goes to validation.
    tiny = np.zeros((10, 17), np.uint8)
    tiny[0, 0] = 1
    tiny[1, 1] = tiny[2, 1] = 1
    val = split_validation(tiny, 0.2, np.random.default_rng(0))
    assert val.sum() == 2 and not val[0] and val[1:3].sum() == 1
