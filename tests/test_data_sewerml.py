"""Sewer-ML data layer: CSV reading and its errors, splits, subsets, images, preprocessing, torch dataset."""

import logging

import cv2
import numpy as np
import pytest

from edgesewer.data.images import read_image
from edgesewer.data.preprocess import preprocess
from edgesewer.data.sewerml import (
    every_kth,
    fraction,
    load_split,
    read_scores_csv,
    read_sewerml_csv,
    stratified_sample,
    write_scores_csv,
)
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER


def write_gt(path, labels, names=None, header=SEWER_CSV_HEADER):
    """A CSV in the official layout (WaterLevel/VA/ND/Defect filled with plausible values)."""
    names = names or [f"{i + 1:08d}.png" for i in range(len(labels))]
    lines = [",".join(header)]
    for name, row in zip(names, labels):
        values = {"Filename": name, "WaterLevel": "10", "VA": "0", "ND": str(int(not any(row))),
                  "Defect": str(int(any(row))), **{c: str(int(v)) for c, v in zip(SEWER_CODES, row)}}
        lines.append(",".join(values[h] for h in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def one_hot(*codes):
    row = [0] * 17
    for c in codes:
        row[SEWER_CODES.index(c)] = 1
    return row


LABELS = [one_hot("RB"), one_hot(), one_hot("OB", "FS"), one_hot("OK")]


# ------------------------------------------------------------------------------------ annotation CSV

def test_read_official_csv(tmp_path):
    names, labels = read_sewerml_csv(write_gt(tmp_path / "SewerML_Val.csv", LABELS))
    assert names == ["00000001.png", "00000002.png", "00000003.png", "00000004.png"]
    assert labels.dtype == np.uint8 and labels.shape == (4, 17)
    assert labels.tolist() == LABELS


def test_column_order_is_free_and_extra_columns_ignored(tmp_path):
    header = ("Defect", *reversed(SEWER_CODES), "Filename", "Extra")
    path = tmp_path / "x.csv"
    lines = [",".join(header)]
    for i, row in enumerate(LABELS):
        lines.append(",".join([str(int(any(row))), *map(str, reversed(row)), f"f{i}.png", "zz"]))
    path.write_text("\n".join(lines) + "\n")
    names, labels = read_sewerml_csv(path)
    assert names == ["f0.png", "f1.png", "f2.png", "f3.png"] and labels.tolist() == LABELS


def test_filename_only_csv_is_the_test_split(tmp_path):
    path = tmp_path / "SewerML_Test.csv"
    path.write_text("Filename\na.png\nb.png\n\n")
    assert read_sewerml_csv(path) == (["a.png", "b.png"], None)


def test_label_spelled_as_float_is_accepted(tmp_path):
    path = write_gt(tmp_path / "g.csv", LABELS)
    path.write_text(path.read_text().replace("00000001.png,10,0,1,", "00000001.png,10,0,1.0,"))
    assert read_sewerml_csv(path)[1].tolist() == LABELS


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("", "empty file"),
    (",".join(SEWER_CSV_HEADER) + "\n", "no data rows"),
    ("Name," + ",".join(SEWER_CODES) + "\n", "missing column(s) Filename"),
    ("Filename," + ",".join(c for c in SEWER_CODES if c not in ("OS", "OP")) + "\nx.png" + ",0" * 15 + "\n",
     "missing label column(s) OS, OP"),
])
def test_annotation_file_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as err:
        read_sewerml_csv(path)
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text


def test_label_not_zero_or_one_names_row_and_column(tmp_path):
    labels = [row[:] for row in LABELS]
    labels[2][SEWER_CODES.index("FS")] = 2  # data row 3 = spreadsheet row 4
    with pytest.raises(DataError, match=r"bad\.csv, row 4, column FS: label '2' is not 0 or 1"):
        read_sewerml_csv(write_gt(tmp_path / "bad.csv", labels))


def test_duplicate_filename_names_both_rows(tmp_path):
    path = write_gt(tmp_path / "dup.csv", LABELS, names=["a.png", "b.png", "a.png", "c.png"])
    with pytest.raises(DataError, match=r"dup\.csv, row 4: duplicate Filename a\.png \(first at row 2\)"):
        read_sewerml_csv(path)


def test_short_row_is_reported(tmp_path):
    path = write_gt(tmp_path / "short.csv", LABELS)
    path.write_text(path.read_text() + "00000009.png,0,1\n")
    with pytest.raises(DataError, match=r"short\.csv, row 6: 3 fields, the header has 22"):
        read_sewerml_csv(path)


# ----------------------------------------------------------------------------------------- score CSV

def test_scores_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((5, 17))
    scores[0, 0] = np.nextafter(0.5, 0)  # must not round up to the threshold
    names = [f"{i}.png" for i in range(5)]
    path = write_scores_csv(tmp_path / "out" / "s.csv", names, scores)
    got_names, got = read_scores_csv(path)
    assert got_names == names and np.array_equal(got, scores)
    assert path.read_text().splitlines()[0] == "Filename," + ",".join(SEWER_CODES)


@pytest.mark.parametrize("cell, message", [
    ("abc", "row 3, column OB: score 'abc' is not a number"),
    ("", "row 3, column OB: score '' is not a number"),
    ("2.5", "row 3, column OB: score 2.5 is not a probability in [0, 1]"),
    ("nan", "row 3, column OB: score nan is not a probability"),
])
def test_bad_score_cell(tmp_path, cell, message):
    path = write_scores_csv(tmp_path / "s.csv", ["a.png", "b.png"], np.full((2, 17), 0.25))
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[1 + SEWER_CODES.index("OB")] = cell
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_scores_csv(path)
    assert str(err.value).startswith(f"{path}, ") and message in str(err.value)


def test_scores_missing_column(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("Filename," + ",".join(SEWER_CODES[:-1]) + "\na.png" + ",0.1" * 16 + "\n")
    with pytest.raises(DataError, match=r"s\.csv: missing column\(s\) OK$"):
        read_scores_csv(path)


# -------------------------------------------------------------------------------------------- splits

def make_images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.full((8, 12, 3), 20 * i, dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i + 1:08d}.png"), image)


def test_load_split_image_folder_lookup(tmp_path):
    write_gt(tmp_path / "SewerML_Val.csv", LABELS)
    make_images(tmp_path, 4)  # images beside the CSV
    split = load_split(tmp_path, "Val")
    assert len(split) == 4 and split.image_dir == tmp_path and split.labels.tolist() == LABELS
    make_images(tmp_path / "images", 4)  # an images/ folder wins
    assert load_split(tmp_path, "Val").image_path(2) == tmp_path / "images" / "00000003.png"
    # A CSV path directly, and an explicit image folder.
    assert load_split(tmp_path / "SewerML_Val.csv").image_dir == tmp_path / "images"
    other = tmp_path / "elsewhere"
    make_images(other, 4)
    assert load_split(tmp_path, "Val", image_dir=other).image_dir == other


def test_load_split_errors(tmp_path):
    write_gt(tmp_path / "SewerML_Train.csv", LABELS)
    with pytest.raises(DataError, match=r"no SewerML_Val\.csv; CSVs there: SewerML_Train\.csv"):
        load_split(tmp_path, "Val")
    make_images(tmp_path / "images", 2)
    with pytest.raises(DataError, match=r"images: 2 of 4 images listed in SewerML_Train\.csv are missing, "
                                        r"e\.g\. 00000003\.png, 00000004\.png"):
        load_split(tmp_path)
    assert len(load_split(tmp_path, check_images=False)) == 4
    with pytest.raises(DataError, match="image folder not found"):
        load_split(tmp_path, image_dir=tmp_path / "nope")


# ------------------------------------------------------------------------------------------- subsets

def synthetic_split(tmp_path, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.002, 0.08, 17)  # rare classes first
    labels = (rng.random((n, 17)) < prevalence).astype(int)
    labels[:, 0] = 0
    labels[n // 2, 0] = 1  # RB has a single positive: it must still be sampled
    labels = labels.tolist()
    write_gt(tmp_path / "SewerML_Train.csv", labels)
    return load_split(tmp_path, check_images=False)


def test_every_kth(tmp_path):
    split = synthetic_split(tmp_path, n=50)
    sub = every_kth(split, 16)
    assert sub.filenames == ["00000001.png", "00000017.png", "00000033.png", "00000049.png"]
    assert np.array_equal(sub.labels, split.labels[[0, 16, 32, 48]])


def test_fraction_is_deterministic_and_ordered(tmp_path):
    split = synthetic_split(tmp_path, n=200)
    a, b, c = fraction(split, 0.1, seed=1), fraction(split, 0.1, seed=1), fraction(split, 0.1, seed=2)
    assert len(a) == 20 and a.filenames == b.filenames and a.filenames != c.filenames
    assert a.filenames == sorted(a.filenames) and len(set(a.filenames)) == 20
    assert len(fraction(split, 0.001)) == 1  # never empty


def test_stratified_sample_covers_rare_classes(tmp_path):
    split = synthetic_split(tmp_path, n=1000)
    n = 108  # quota per class = 108 // 36 = 3
    sub = stratified_sample(split, n, seed=0)
    assert len(sub) == n and len(set(sub.filenames)) == n
    counts, got = split.labels.sum(axis=0), sub.labels.sum(axis=0)
    assert counts[0] == 1 and got[0] == 1
    assert np.all(got >= np.minimum(counts, 3)), (counts, got)
    share = (split.labels.sum(axis=1) == 0).mean()
    assert abs((sub.labels.sum(axis=1) == 0).sum() - round(n * share)) <= 1
    assert stratified_sample(split, n, seed=0).filenames == sub.filenames
    assert sub.filenames == sorted(sub.filenames)
    # n >= N: every row.
    assert len(stratified_sample(split, 5000)) == 1000


# ------------------------------------------------------------------------------------ images, preprocess

def test_read_image_is_rgb_and_errors_name_the_file(tmp_path):
    bgr = np.zeros((3, 4, 3), dtype=np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "b.png"), bgr)
    rgb = read_image(tmp_path / "b.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8 and rgb[0, 0].tolist() == [0, 0, 200]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "bad.png").write_bytes(b"not a png at all" * 10)
    for name, message in (("missing.png", "not found"), ("empty.png", "empty"), ("bad.png", "not a readable image")):
        with pytest.raises(DataError, match=f"{name}: .*{message}"):
            read_image(tmp_path / name)


def test_preprocess_numbers():
    image = np.array([[[255, 0, 51], [0, 255, 102]]], dtype=np.uint8)  # 1 x 2
    x = preprocess(np.repeat(image, 2, axis=0), size=2, mean=(0.5, 0.5, 0.2), std=(0.5, 0.25, 0.1))
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    # R: (1 - .5)/.5 = 1, (0 - .5)/.5 = -1; G: (0 - .5)/.25 = -2, (1 - .5)/.25 = 2; B: (.2 - .2)/.1 = 0, (.4 - .2)/.1 = 2
    np.testing.assert_allclose(x[0, :, 0, :], [[1, -1], [-2, 2], [0, 2]], atol=1e-6)
    np.testing.assert_array_equal(x[0, :, 0, :], x[0, :, 1, :])  # no resize at the target size


def test_preprocess_resizes_whole_image_and_batches():
    a = np.full((40, 60, 3), 255, dtype=np.uint8)
    b = np.zeros((30, 10, 3), dtype=np.uint8)
    x = preprocess([a, b], size=16, mean=(0, 0, 0), std=(1, 1, 1), interpolation="area")
    assert x.shape == (2, 3, 16, 16)
    assert np.allclose(x[0], 1.0) and np.allclose(x[1], 0.0)
    stacked = preprocess(np.stack([a, a]), size=8, mean=(0, 0, 0), std=(1, 1, 1))
    assert stacked.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown interpolation"):
        preprocess(a, 8, (0, 0, 0), (1, 1, 1), interpolation="fancy")


# ------------------------------------------------------------------------------------- torch dataset

def test_torch_dataset_skip_and_error(tmp_path, caplog):
    from edgesewer.data.torch_dataset import SewerMLDataset

    write_gt(tmp_path / "SewerML_Val.csv", LABELS)
    make_images(tmp_path / "images", 4)
    (tmp_path / "images" / "00000002.png").write_bytes(b"\x89PNG garbage" * 7)  # corrupt
    split = load_split(tmp_path, "Val")
    ds = SewerMLDataset(split, size=8, mean=(0, 0, 0), std=(1, 1, 1))
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and y.tolist() == LABELS[0] and float(x.max()) == 0.0
    with caplog.at_level(logging.WARNING):
        x1, y1 = ds[1]  # row 2 is corrupt -> row 3 (value 40) and its own label
        ds[1]
    assert y1.tolist() == LABELS[2] and float(x1.mean()) == pytest.approx(40 / 255)
    assert ds.skipped == 2 and ds.bad_rows == {1}
    warnings = [r for r in caplog.records if "00000002.png" in r.getMessage()]
    assert len(warnings) == 1  # once per file

    strict = SewerMLDataset(split, size=8, mean=(0, 0, 0), std=(1, 1, 1), on_bad_image="error")
    with pytest.raises(DataError, match=r"00000002\.png: not a readable image"):
        strict[1]


def test_torch_dataset_augment_and_unlabelled(tmp_path):
    from edgesewer.data.torch_dataset import SewerMLDataset

    (tmp_path / "SewerML_Test.csv").write_text("Filename\n00000001.png\n00000002.png\n")
    make_images(tmp_path, 2)
    split = load_split(tmp_path, "Test")
    ds = SewerMLDataset(split, 4, (0, 0, 0), (1, 1, 1), augment=lambda im: 255 - im[:, ::-1])
    x, y = ds[1]  # pixel value 20, inverted -> 235
    assert y.tolist() == [0.0] * 17 and float(x.mean()) == pytest.approx(235 / 255)
