"""Crack dataset readers (all four layouts), their error messages, the edge channel and the torch datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgesewer.data import crack_errata
from edgesewer.data.crack import (CrackFolder, _crackforest_pairs, detect_layout, list_pairs, load_pair, read_mask,
                                  split_pairs, spread_indices)
from edgesewer.data.crack_errata import identical_masks, mask_digest
from edgesewer.data.images import read_image
from edgesewer.data.crack_torch import CrackEvalDataset, CrackTrainDataset, augment_pair, jitter_photometric
from edgesewer.data.edges import EDGE_DETECTORS, blackhat_edges, crack_input, crack_input_batch
from edgesewer.errors import DataError


# The real CrackForest set (CI clones the repository next to shared/); tests that need it skip without it.
CRACKFOREST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "CrackForest"
needs_crackforest = pytest.mark.skipif(not (CRACKFOREST / "groundTruth").is_dir(),
                                       reason=f"CrackForest not found at {CRACKFOREST}")


def draw_sample(seed: int, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Grey textured surface with one dark crack line; returns (RGB uint8, mask uint8 0/255)."""
    rng = np.random.default_rng(seed)
    tint = np.array([190, 160, 130])  # distinct channel levels reveal an RGB/BGR mix-up
    rgb = (tint + rng.integers(-15, 16, (height, width, 3))).astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    start = (int(rng.integers(0, width // 3)), 0)
    end = (int(rng.integers(2 * width // 3, width)), height - 1)
    cv2.line(mask, start, end, 255, 3)
    rgb[mask > 0] = 40
    return rgb, mask


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


def make_deepcrack(root: Path, n_train: int = 3, n_test: int = 2) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            rgb, mask = draw_sample(i + (100 if split == "test" else 0))
            write_rgb(root / f"{split}_img" / f"{i:03d}.jpg", rgb)
            write_mask(root / f"{split}_lab" / f"{i:03d}.png", mask)
    return root


def make_crackforest(root: Path, n: int = 5) -> Path:
    from scipy.io import savemat

    (root / "groundTruth").mkdir(parents=True)
    for i in range(1, n + 1):
        rgb, mask = draw_sample(i, 64, 96)
        write_rgb(root / "image" / f"{i:03d}.jpg", rgb)
        segmentation = np.where(mask > 0, 2, 1).astype(np.uint8)
        boundaries = np.zeros_like(segmentation)
        savemat(root / "groundTruth" / f"{i:03d}.mat",
                {"groundTruth": np.array([[{"Segmentation": segmentation, "Boundaries": boundaries}]], dtype=object)})
    write_rgb(root / "image" / "200.jpg", draw_sample(200, 64, 96)[0])  # unlabelled, as in the real set
    return root


def test_deepcrack_layout_pairs_and_loading(tmp_path):
    root = make_deepcrack(tmp_path / "dc")
    assert detect_layout(root) == "deepcrack"
    pairs = list_pairs(root, "trainval")  # the shipped train split
    assert [p.image.name for p in pairs] == ["000.jpg", "001.jpg", "002.jpg"]
    # No shipped val split: one training image (10 %, at least 1) is carved out for model selection.
    assert [p.image.name for p in list_pairs(root, "val")] == ["001.jpg"]
    assert [p.image.name for p in list_pairs(root, "train")] == ["000.jpg", "002.jpg"]
    assert all(p.mask.parent.name == "train_lab" and p.mask.stem == p.image.stem for p in pairs)
    folder = CrackFolder(root, "test")
    rgb, mask = folder[0]
    expected_rgb, expected_mask = draw_sample(100)
    assert rgb.dtype == np.uint8 and rgb.shape == (96, 128, 3)
    assert mask.dtype == bool and np.array_equal(mask, expected_mask > 127)
    np.testing.assert_allclose(rgb[~mask].mean(axis=0), expected_rgb[~mask].mean(axis=0), atol=3)  # RGB order
    with pytest.raises(DataError, match="ships splits train and test, not 'extra'"):
        list_pairs(root, "extra")


def test_crackforest_mat_ground_truth(tmp_path):
    root = make_crackforest(tmp_path / "cfd")
    assert detect_layout(root) == "crackforest"
    pairs = list_pairs(root, "all")
    assert len(pairs) == 5 and "200.jpg" not in {p.image.name for p in pairs}  # unlabelled image skipped
    # 80/20 as the SCNet paper holds out (1 of 5), then 1 of the 4 others for validation
    assert [len(list_pairs(root, s)) for s in ("trainval", "train", "val", "test")] == [4, 3, 1, 1]
    _, mask = load_pair(pairs[0])
    assert np.array_equal(mask, draw_sample(1, 64, 96)[1] > 0)  # Segmentation == 2 is crack


def test_spread_indices_are_exact_and_even():
    assert spread_indices(118, 0.2) == [int((k + 0.5) * 118 / 24) for k in range(24)]
    assert spread_indices(10, 0.2) == [2, 7] and spread_indices(1, 0.2) == [] and spread_indices(3, 0.1) == [1]
    gaps = np.diff(spread_indices(118, 0.2))
    assert gaps.min() >= 4 and gaps.max() <= 5  # spread over the sequence, not a block at its end


@needs_crackforest
def test_real_crackforest_split_is_80_20_with_a_validation_part():
    splits = {s: [p.image.stem for p in list_pairs(CRACKFOREST, s)] for s in ("all", "trainval", "train", "val", "test")}
    # 118 labelled images, 24 held out for testing; 042 (a copied mask, see crack_errata) leaves the test split
    # after the split is drawn, so no other image changes split.
    assert {k: len(v) for k, v in splits.items()} == {"all": 117, "trainval": 94, "train": 85, "val": 9, "test": 23}
    assert not set(splits["test"]) & set(splits["trainval"]) and not set(splits["val"]) & set(splits["train"])
    assert sorted(splits["train"] + splits["val"]) == splits["trainval"]
    assert splits["test"][:3] == ["003", "008", "013"]  # fixed: results stay comparable between versions
    assert splits["test"][7:10] == ["037", "047", "052"] and "042" not in splits["all"]


@needs_crackforest
def test_real_crackforest_has_one_copied_mask_and_the_errata_name_it():
    everything = _crackforest_pairs(CRACKFOREST, "all")
    groups = identical_masks(everything, lambda p: read_mask(p.mask))
    assert [[p.image.stem for p in group] for group in groups] == [["042", "065"]]
    # Which of the two is wrong: how much likelier a mask pixel is to be a dark line (black-hat cue) than any
    # pixel of its photo. Photo 065 under the shared mask: 46x; photo 042: 1.05x, chance (it shows one crack
    # elsewhere). Every other labelled photo's own mask: 2.6x or more.
    def enrichment(stem: str, mask: np.ndarray) -> float:
        dark = blackhat_edges(cv2.cvtColor(read_image(CRACKFOREST / "image" / f"{stem}.jpg"), cv2.COLOR_RGB2GRAY))
        return float(dark[mask].mean() / dark.mean())

    shared = read_mask(CRACKFOREST / "groundTruth" / "065.mat")
    assert enrichment("065", shared) > 20 and enrichment("042", shared) < 1.5
    others = {p.image.stem: enrichment(p.image.stem, read_mask(p.mask)) for p in everything[::10] if p.image.stem != "042"}
    assert min(others.values()) > 2.0, others
    folder = CrackFolder(CRACKFOREST, "test")
    assert len(folder) == 23 and [e.split(":")[0] for e in folder.excluded] == ["042.jpg"]


def test_known_label_errors_leave_after_the_split_and_are_logged(tmp_path, monkeypatch, caplog):
    root = make_crackforest(tmp_path / "cf", n=10)
    before = {s: [p.image.stem for p in list_pairs(root, s)] for s in ("train", "val", "test")}
    assert before["test"] == ["003", "008"]
    wrong = read_mask(root / "groundTruth" / "008.mat")
    monkeypatch.setitem(crack_errata.KNOWN_LABEL_ERRORS, "crackforest",
                        (crack_errata.LabelError("groundTruth/008.mat", mask_digest(wrong), "copied from 999"),))
    with caplog.at_level("WARNING"):
        pairs, excluded = split_pairs(root, "test")
    assert [p.image.stem for p in pairs] == ["003"] and excluded == ["008.jpg: copied from 999"]
    assert "groundTruth/008.mat: copied from 999" in caplog.text
    assert [p.image.stem for p in list_pairs(root, "train")] == before["train"]  # nobody else moves
    # A corrected file (another mask under the same name) is kept.
    monkeypatch.setitem(crack_errata.KNOWN_LABEL_ERRORS, "crackforest",
                        (crack_errata.LabelError("groundTruth/008.mat", mask_digest(~wrong), "copied from 999"),))
    assert [p.image.stem for p in list_pairs(root, "test")] == ["003", "008"]
    # Identical masks are found whatever the names; crack-free (empty) masks are not "identical".
    masks = {"a": wrong, "b": wrong.copy(), "c": ~wrong, "d": np.zeros_like(wrong), "e": np.zeros_like(wrong)}
    assert identical_masks(masks, masks.get) == [["a", "b"]]


def test_crackforest_mat_without_ground_truth_variable(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "001.mat"
    savemat(path, {"other": np.zeros((2, 2))})
    with pytest.raises(DataError, match="001.mat: no 'groundTruth' variable"):
        read_mask(path)


def test_crack500_txt_lists(tmp_path):
    root = tmp_path / "crack500"
    lines = []
    for i in range(2):
        rgb, mask = draw_sample(i)
        write_rgb(root / "traincrop" / f"a{i}.jpg", rgb)
        write_mask(root / "traincrop" / f"a{i}_mask.png", mask)
        lines.append(f"traincrop/a{i}.jpg traincrop/a{i}_mask.png")
    (root / "train.txt").write_text("\n".join(lines) + "\n\n")
    assert detect_layout(root) == "crack500"
    pairs = list_pairs(root, "all")  # only train.txt so far
    assert [(p.image.name, p.mask.name) for p in pairs] == [("a0.jpg", "a0_mask.png"), ("a1.jpg", "a1_mask.png")]
    (root / "test.txt").write_text("traincrop/a0.jpg traincrop/missing.png\n")
    with pytest.raises(DataError, match=r"test.txt:1: mask file .*missing.png not found"):
        list_pairs(root, "test")
    (root / "val.txt").write_text("only-one-field.jpg\n")
    with pytest.raises(DataError, match=r"val.txt:1: expected '<image> <mask>'"):
        list_pairs(root, "val")
    (root / "train.txt").unlink()  # without a list: pair the crops in traincrop/ by stem
    assert [p.mask.name for p in list_pairs(root, "train")] == ["a0_mask.png", "a1_mask.png"]


def test_plain_folder_and_its_errors(tmp_path):
    root = tmp_path / "plain"
    rgb, mask = draw_sample(0)
    write_rgb(root / "images" / "x.png", rgb)
    write_mask(root / "masks" / "x.png", mask)
    assert detect_layout(root) == "folder"
    assert len(CrackFolder(root, "all")) == 1

    write_rgb(root / "images" / "y.jpg", rgb)
    with pytest.raises(DataError, match=r"y.jpg: no mask for this image"):
        list_pairs(root, "all")

    write_mask(root / "masks" / "y.png", mask[:50])
    with pytest.raises(DataError, match=r"y.png: mask is 128x50 but image y.jpg is 128x96"):
        CrackFolder(root, "all")[1]


def test_mask_checks(tmp_path):
    grey = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (64, 1))  # a gradient: not a mask
    write_mask(tmp_path / "grey.png", grey)
    with pytest.raises(DataError, match=r"grey.png: mask is not binary \(91% of pixels"):
        read_mask(tmp_path / "grey.png")
    write_mask(tmp_path / "classes.png", np.array([[0, 1], [2, 3]], dtype=np.uint8))
    with pytest.raises(DataError, match="classes.png: mask values go up to 3 only"):
        read_mask(tmp_path / "classes.png")
    write_mask(tmp_path / "zero_one.png", np.array([[0, 1], [1, 0]], dtype=np.uint8))
    assert read_mask(tmp_path / "zero_one.png").tolist() == [[False, True], [True, False]]
    soft = np.zeros((20, 20), dtype=np.uint8)
    soft[:, 10] = 255
    soft[0, 9] = 128  # one anti-aliased pixel (0.25%): accepted and binarised at > 127
    write_mask(tmp_path / "soft.png", soft)
    assert read_mask(tmp_path / "soft.png").sum() == 21
    with pytest.raises(DataError, match="nowhere.png: mask file not found"):
        read_mask(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="not a crack dataset"):
        detect_layout(tmp_path)


def test_crack_input_channels():
    rgb, mask = draw_sample(3)
    x = crack_input(rgb)
    assert x.shape == (4, 96, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x[:3, 5, 7], rgb[5, 7] / 127.5 - 1, rtol=1e-6)
    assert set(np.unique(x[3])) == {0.0, 1.0}
    # Canny fires along both sides of the drawn crack, not on the flat texture far from it.
    near_crack = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
    assert x[3][near_crack].mean() > 0.2 and x[3][~near_crack].mean() < x[3][near_crack].mean() / 4
    assert crack_input(rgb, size=64).shape == (4, 64, 64)
    assert crack_input(rgb, size=(64, 32)).shape == (4, 32, 64)
    assert crack_input_batch([rgb, rgb], size=32).shape == (2, 4, 32, 32)
    for name in EDGE_DETECTORS:
        edges = crack_input(rgb, edge=name)[3]
        assert edges.shape == (96, 128) and set(np.unique(edges)) <= {0.0, 1.0}
    assert crack_input(rgb, edge="none")[3].max() == 0
    with pytest.raises(ValueError, match="unknown edge detector 'hed'"):
        crack_input(rgb, edge="hed")


def test_blackhat_marks_the_dark_line_itself():
    rgb, mask = draw_sample(3)
    edges = crack_input(rgb, edge="blackhat")[3] > 0
    line = mask > 0
    # Canny fires beside the line; the black-hat fires on it and almost nowhere else.
    assert edges[line].mean() > 0.9 and edges[~line].mean() < 0.01
    canny = crack_input(rgb, edge="canny")[3] > 0
    assert canny[line].mean() < edges[line].mean()
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert not crack_input(flat, edge="blackhat")[3].any()


@needs_crackforest
def test_blackhat_is_a_better_crack_cue_than_canny_on_crackforest():
    """Pixel F1 of the edge map alone against the ground truth, pooled over the training images."""
    folder = CrackFolder(CRACKFOREST, "train")
    counts = {"canny": np.zeros(3), "blackhat": np.zeros(3)}
    for i in range(0, len(folder), 4):
        rgb, mask = folder[i]
        for name in counts:
            edges = crack_input(rgb, edge=name)[3] > 0
            counts[name] += [np.sum(edges & mask), np.sum(edges & ~mask), np.sum(~edges & mask)]
    f1 = {name: 2 * tp / (2 * tp + fp + fn) for name, (tp, fp, fn) in counts.items()}
    assert f1["blackhat"] > 0.3 and f1["blackhat"] > 1.8 * f1["canny"], f1


def test_augmentation_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    rgb, mask = draw_sample(5)
    for _ in range(5):
        crop_rgb, crop_mask = augment_pair(rgb, mask > 0, 64, rng)
        assert crop_rgb.shape == (64, 64, 3) and crop_mask.shape == (64, 64)
        if crop_mask.any():  # the crack pixels are the dark ones wherever the crop lands
            assert crop_rgb[crop_mask].mean() < 90 and crop_rgb[~crop_mask].mean() > 140
    small_rgb, small_mask = augment_pair(rgb[:40, :50], mask[:40, :50] > 0, 64, rng, max_rotation=0)
    assert small_rgb.shape == (64, 64, 3) and small_mask.shape == (64, 64)  # padded up to the crop


def test_right_angle_turns_are_lossless_where_arbitrary_angles_resample():
    # An asymmetric 1-px crack: every quarter turn appears, and each keeps the crack exactly on the dark pixels.
    rgb = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 30] = mask[20, 35:60] = True
    rgb[mask] = 20
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(16):
        out_rgb, out_mask = augment_pair(rgb, mask, 64, rng, max_rotation=0, hflip=0, vflip=0, right_angles=True)
        assert out_rgb.flags.c_contiguous and out_mask.flags.c_contiguous
        assert np.array_equal(out_rgb[..., 0] == 20, out_mask)  # exact, pixel for pixel
        seen.add(next(k for k in range(4) if np.array_equal(np.rot90(mask, k), out_mask)))
    assert seen == {0, 1, 2, 3}
    # An arbitrary angle resamples the image (bilinear) and the mask (nearest): the pair no longer agrees exactly.
    from edgesewer.data.crack_torch import rotate_pair
    r_rgb, r_mask = rotate_pair(rgb, mask, 33.0)
    assert not np.array_equal(r_rgb[..., 0] < 110, r_mask)


def test_photometric_jitter_changes_light_not_the_crack():
    rgb = np.full((64, 64, 3), (200, 180, 160), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[:, 30:32] = True
    rgb[mask] = 40
    rng = np.random.default_rng(3)
    assert jitter_photometric(rgb, rng) is rgb  # all strengths 0: untouched
    means, spreads = [], []
    for _ in range(50):
        out_rgb, out_mask = augment_pair(rgb, mask, 64, rng, max_rotation=0, hflip=0, vflip=0,
                                         jitter=(0.3, 0.3, 0.3))
        assert out_rgb.dtype == np.uint8 and np.array_equal(out_mask, mask)
        grey = out_rgb.mean(axis=2)
        assert grey[mask].mean() < grey[~mask].mean() - 60  # the crack stays the dark line
        means.append(grey.mean())
        spreads.append(out_rgb[~mask].max(axis=-1).mean() - out_rgb[~mask].min(axis=-1).mean())
    base = rgb.mean(axis=2).mean()
    # Factors uniform in [0.7, 1.3]: brightness moves over tens of grey levels both ways, saturation too.
    assert min(means) < base - 15 and max(means) > base + 15
    assert min(spreads) < 40 * 0.85 and max(spreads) > 40 * 1.15


def test_torch_datasets(tmp_path):
    folder = CrackFolder(make_deepcrack(tmp_path / "dc"), "trainval")
    train = CrackTrainDataset(folder, crop=64, repeats=2)
    assert len(train) == 6
    torch.manual_seed(0)
    x, y = train[0]
    assert x.shape == (4, 64, 64) and y.shape == (1, 64, 64) and x.dtype == torch.float32
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}

    x, y = CrackEvalDataset(folder, size=64)[1]
    assert x.shape == (4, 64, 64) and y.shape == (1, 64, 64)
    x, y = CrackEvalDataset(folder, mode="pad")[1]  # 128x96 -> 128x96 already multiples of 32
    assert x.shape == (4, 96, 128) and (y >= 0).all()
    cropped = CrackFolder(tmp_path / "dc", "test")
    cropped.pairs = cropped.pairs[:1]
    write_rgb(tmp_path / "dc2" / "test_img" / "a.jpg", draw_sample(0, 70, 100)[0])
    write_mask(tmp_path / "dc2" / "test_lab" / "a.png", draw_sample(0, 70, 100)[1])
    x, y = CrackEvalDataset(CrackFolder(tmp_path / "dc2", "test"), mode="pad")[0]
    assert x.shape == (4, 96, 128) and (y[0, 70:] == -1).all() and (y[0, :, 100:] == -1).all()
    assert (y[0, :70, :100] >= 0).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        CrackTrainDataset(folder, crop=100)


def test_crack_jitter_is_opt_in_from_the_recipe():
    from edgesewer.train.recipe import load_recipe
    from edgesewer.train.segment import crack_jitter
    shipped = load_recipe(path=Path(__file__).parents[1] / "train" / "scnet.yaml")
    assert crack_jitter(shipped.augment) == (0.0, 0.0, 0.0)  # the classifiers' color_jitter default stays off
    opted = load_recipe(path=Path(__file__).parents[1] / "train" / "scnet.yaml",
                        overrides=["augment.jitter_cracks=true", "augment.color_jitter=[0.2,0.3,0.1,0.4]"])
    assert crack_jitter(opted.augment) == (0.2, 0.3, 0.1)  # hue is left out
