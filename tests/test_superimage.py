"""Super-image layout: frame sampling, 3x3 tiling, per-frame flips and the tile-order shuffle."""

import numpy as np
import pytest

from edgesewer.data.preprocess import preprocess
from edgesewer.data.superimage import (augment_frames, make_superimage, resize_tile, sample_indices,
                                       superimage_input, tile_frames, tile_size_for)


def _solid(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def _half(size: int = 8) -> np.ndarray:
    """Left half black, right half white: shows whether a tile was flipped."""
    frame = np.zeros((size, size, 3), dtype=np.uint8)
    frame[:, size // 2:] = 255
    return frame


def test_sample_indices_are_segment_centres():
    # 90 frames in 9 segments of 10: centres at 5, 15, ..., 85.
    assert sample_indices(90).tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85]
    # 10 frames: floor((j + 0.5) * 10 / 9) -> 0.56, 1.67, 2.78, 3.89, 5.0, 6.11, 7.22, 8.33, 9.44.
    assert sample_indices(10).tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # A sub-range [100, 190) is sampled the same way, shifted.
    assert sample_indices(300, start=100, stop=190).tolist() == [105, 115, 125, 135, 145, 155, 165, 175, 185]
    # Fewer frames than samples: floor((j + 0.5) * 4 / 9) repeats indices and stays in range.
    assert sample_indices(4).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        sample_indices(0)


def test_jittered_indices_stay_inside_their_segments():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = sample_indices(90, rng=rng)
        assert all(10 * j <= i < 10 * (j + 1) for j, i in enumerate(idx))
        seen.update(idx.tolist())
    assert len(seen) == 90  # every frame of every segment gets drawn eventually


def test_tiling_is_row_major_in_time_order():
    frames = [_solid(10 + 20 * i) for i in range(9)]
    image = tile_frames(frames, tile=8)
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8
    for p in range(9):
        r, c = divmod(p, 3)
        assert (image[8 * r:8 * r + 8, 8 * c:8 * c + 8] == 10 + 20 * p).all()


def test_tiling_follows_a_given_order():
    frames = [_solid(10 + 20 * i) for i in range(9)]
    order = [8, 7, 6, 5, 4, 3, 2, 1, 0]
    image = tile_frames(frames, tile=4, order=order)
    # Grid position 0 (top-left) holds frame 8, position 5 (row 1, col 2) holds frame 3.
    assert image[0, 0, 0] == 10 + 20 * 8
    assert image[4, 8, 0] == 10 + 20 * 3
    with pytest.raises(ValueError):
        tile_frames(frames, tile=4, order=[0] * 9)
    with pytest.raises(ValueError):
        tile_frames(frames[:8], tile=4)


def test_frames_of_any_size_are_resized_to_the_tile():
    frames = [np.full((30 + i, 50, 3), 100, dtype=np.uint8) for i in range(9)]
    image = tile_frames(frames, tile=16)
    assert image.shape == (48, 48, 3) and (image == 100).all()
    same = _solid(5, 16)
    assert resize_tile(same, 16) is same  # already tile-sized: no copy


def test_hflip_flips_every_tile_when_certain_and_none_when_off():
    frames = [_half() for _ in range(9)]
    rng = np.random.default_rng(0)
    flipped, order = augment_frames(frames, rng, hflip=1.0, shuffle=0.0)
    assert order == list(range(9))
    assert all((f[:, :4] == 255).all() and (f[:, 4:] == 0).all() for f in flipped)
    kept, _ = augment_frames(frames, rng, hflip=0.0, shuffle=0.0)
    assert all((f[:, :4] == 0).all() for f in kept)


def test_shuffle_permutes_the_tiles():
    frames = [_solid(10 + 20 * i) for i in range(9)]
    rng = np.random.default_rng(1)
    image = make_superimage(frames, 8, rng=rng, hflip=0.0, shuffle=1.0)
    values = [int(image[8 * (p // 3), 8 * (p % 3), 0]) for p in range(9)]
    assert sorted(values) == [10 + 20 * i for i in range(9)]  # every frame once
    assert values != [10 + 20 * i for i in range(9)]  # in another order
    # Without an rng nothing is augmented: identical to plain tiling.
    assert (make_superimage(frames, 8) == tile_frames(frames, 8)).all()


def test_superimage_input_is_the_normalised_tiling():
    frames = [_solid(255 if i == 4 else 0, 12) for i in range(9)]
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    x = superimage_input(frames, 4, mean, std)
    assert x.shape == (1, 3, 12, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x, preprocess(tile_frames(frames, 4), 12, mean, std))
    # The centre tile (frame 4) is white: (1 - mean) / std; the rest black: -mean / std.
    np.testing.assert_allclose(x[0, :, 5, 5], [2.0, 3.0, 7.0], rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 0], [-2.0, -2.0, -3.0], rtol=1e-6)


def test_tile_size_for():
    assert tile_size_for(672) == 224
    with pytest.raises(ValueError):
        tile_size_for(100)
