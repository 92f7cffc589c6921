"""Subset CSVs (MA-Q2L's released SewerML_Train_sub_0.0625.csv and its Val twin): recipe fields and
CLI options pick exactly the listed rows; an absent file falls back to every 16th row with a note."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesewer.cli.train import _overrides
from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER
from edgesewer.train.classify import load_splits
from edgesewer.train.recipe import load_recipe

TRAIN_SUB = "SewerML_Train_sub_0.0625.csv"
VAL_SUB = "SewerML_Val_sub_0.0625.csv"


def _row(name: str, labels) -> str:
    defect = int(any(labels))
    return ",".join([name, "0", "0", *map(str, labels), str(1 - defect), str(defect)])


def _sewer_folder(root: Path, n_train: int = 40, n_val: int = 16) -> dict[str, list[tuple[str, list[int]]]]:
    """A Sewer-ML folder (CSV + 8 px images in images/); returns the rows per split."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows, index = {}, 0
    for split, n in (("Train", n_train), ("Val", n_val)):
        rows[split] = []
        for _ in range(n):
            index += 1
            name = f"{index:08d}.png"
            labels = (rng.random(17) < 0.2).astype(int).tolist()
            cv2.imwrite(str(root / "images" / name), np.full((8, 8, 3), index % 255, np.uint8))
            rows[split].append((name, labels))
        (root / f"SewerML_{split}.csv").write_text(
            "\n".join([",".join(SEWER_CSV_HEADER)] + [_row(n_, l_) for n_, l_ in rows[split]]) + "\n")
    return rows


def _subset_file(path: Path, rows, picks) -> Path:
    """A hand-written subset CSV: the authors' column order, the picked rows of the full split."""
    path.write_text("\n".join([",".join(SEWER_CSV_HEADER)] + [_row(*rows[i]) for i in picks]) + "\n")
    return path


def _recipe(*overrides: str):
    return load_recipe("ma-q2l-r101", overrides=["data.num_workers=0", *overrides])


def test_subset_files_select_exactly_their_rows(tmp_path):
    data = tmp_path / "Sewer-ML"
    rows = _sewer_folder(data)
    _subset_file(data / TRAIN_SUB, rows["Train"], [2, 5, 11, 30])
    elsewhere = _subset_file(tmp_path / VAL_SUB, rows["Val"], [0, 7])  # outside the data folder, by path
    # every_kth does not thin a split that comes from a subset file.
    train, val = load_splits(_recipe(f"data.train_csv={TRAIN_SUB}", f"data.val_csv={elsewhere}",
                                     "data.every_kth=16"), data)
    assert train.filenames == [rows["Train"][i][0] for i in (2, 5, 11, 30)]
    assert train.labels.tolist() == [rows["Train"][i][1] for i in (2, 5, 11, 30)]
    assert val.filenames == [rows["Val"][0][0], rows["Val"][7][0]]
    assert train.image_dir == val.image_dir == data / "images"  # images stay in the full set's folder
    assert train.csv_path == data / TRAIN_SUB and train.labels.shape == (4, len(SEWER_CODES))


def test_absent_subset_files_fall_back_to_every_16th_row(tmp_path, capsys):
    data = tmp_path / "Sewer-ML"
    rows = _sewer_folder(data)
    train, val = load_splits(_recipe(f"data.train_csv={TRAIN_SUB}", f"data.val_csv={VAL_SUB}"), data)
    assert train.filenames == [rows["Train"][i][0] for i in (0, 16, 32)]
    assert val.filenames == [rows["Val"][0][0]]
    out = capsys.readouterr().out
    assert f"note: subset file {TRAIN_SUB} not found" in out and "every 16th row of SewerML_Train.csv" in out
    assert f"note: subset file {VAL_SUB} not found" in out
    # Without subset files the recipe's full data is used, unchanged.
    full_train, _ = load_splits(_recipe(), data)
    assert len(full_train) == 40


def test_subset_file_without_filename_column_is_a_one_line_error(tmp_path):
    data = tmp_path / "Sewer-ML"
    _sewer_folder(data)
    bad = data / TRAIN_SUB
    bad.write_text(",".join(c for c in SEWER_CSV_HEADER if c != "Filename") + "\n" + ",".join(["0"] * 21) + "\n")
    with pytest.raises(DataError) as info:
        load_splits(_recipe(f"data.train_csv={TRAIN_SUB}"), data)
    assert str(info.value) == f"{bad}: missing column(s) Filename"


def test_cli_options_become_recipe_fields():
    sets = _overrides(None, train_csv=Path("subs") / TRAIN_SUB, val_csv=Path(VAL_SUB), pretrain_mode="hybrid")
    assert sets == [f"data.train_csv=subs/{TRAIN_SUB}", f"data.val_csv={VAL_SUB}", "dino.mode=hybrid"]
    recipe = _recipe(*sets[:2])
    assert recipe.data.train_csv == f"subs/{TRAIN_SUB}" and recipe.data.val_csv == VAL_SUB
