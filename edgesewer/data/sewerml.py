"""The Sewer-ML data layer (torch-free): annotation and score CSVs, splits and subsets.

CSV errors name the file and the row as a spreadsheet shows it (the header is row 1, the first
data row is row 2). Only `Filename` and the 17 codes are read; other columns (WaterLevel, VA, ND,
Defect, ...) may be present in any order and are ignored.
"""

from __future__ import annotations

import csv
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from edgesewer.errors import DataError
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER

FILENAME = "Filename"
_CHUNK = 65536  # rows converted to numpy at a time: keeps 1M-row CSVs at a few hundred MB


@dataclass
class SewerMLSplit:
    """One Sewer-ML split: image file names, their folder, and N x 17 uint8 labels (None when unlabelled)."""

    csv_path: Path
    image_dir: Path
    filenames: list[str]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.filenames)

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.filenames[i]

    def subset(self, indices: Sequence[int] | np.ndarray) -> "SewerMLSplit":
        """The rows at `indices`, in the order given."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return SewerMLSplit(self.csv_path, self.image_dir, [self.filenames[i] for i in idx], labels)


# ----------------------------------------------------------------------------------------- CSV reading

def _data_rows(path: Path, reader) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, fields) of every non-blank data row."""
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                yield reader.line_num, fields
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}, row {reader.line_num + 1}: not readable as CSV ({exc})") from None


def _column_index(path: Path, header: list[str], names: Sequence[str]) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    duplicated = sorted({n for n in names if header.count(n) > 1})
    if duplicated:
        raise DataError(f"{path}: column(s) {', '.join(duplicated)} appear more than once in the header")
    return [header.index(n) for n in names]


def _read_columns(
    path: Path, choose: Callable[[list[str]], Sequence[str]], parse: Callable[..., np.ndarray]
) -> tuple[list[str], np.ndarray | None]:
    """Read Filename + the value columns that `choose(header)` names (it may raise on a bad header).

    `parse(path, chunk, row_numbers, names)` turns a chunk of string tuples into a numpy block,
    raising a row-naming DataError on a bad cell. Values are None when no value column is chosen.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: Excel writes a BOM
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file (no header row)") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV ({exc})") from None
        file_col = _column_index(path, header, [FILENAME])[0]
        names = choose(header)
        value_cols = _column_index(path, header, names) if names else []
        width = max([file_col, *value_cols]) + 1
        pick = operator.itemgetter(*value_cols) if len(value_cols) > 1 else None

        filenames: list[str] = []
        first_row: dict[str, int] = {}
        blocks: list[np.ndarray] = []
        chunk: list[tuple[str, ...]] = []
        chunk_rows: list[int] = []
        for row_number, fields in _data_rows(path, reader):
            if len(fields) < width:
                raise DataError(f"{path}, row {row_number}: {len(fields)} fields, the header has {len(header)}")
            name = fields[file_col].strip()
            if not name:
                raise DataError(f"{path}, row {row_number}: empty Filename")
            if name in first_row:
                raise DataError(f"{path}, row {row_number}: duplicate Filename {name} (first at row {first_row[name]})")
            first_row[name] = row_number
            filenames.append(name)
            if value_cols:
                chunk.append(pick(fields) if pick else (fields[value_cols[0]],))
                chunk_rows.append(row_number)
                if len(chunk) == _CHUNK:
                    blocks.append(parse(path, chunk, chunk_rows, names))
                    chunk, chunk_rows = [], []
    if not filenames:
        raise DataError(f"{path}: no data rows below the header")
    if not value_cols:
        return filenames, None
    if chunk:
        blocks.append(parse(path, chunk, chunk_rows, names))
    return filenames, np.concatenate(blocks)


def _parse_labels(path: Path, chunk: list[tuple[str, ...]], row_numbers: list[int], names: Sequence[str]) -> np.ndarray:
    cells = np.array(chunk, dtype=str)
    ones, zeros = cells == "1", cells == "0"
    bad = ~(ones | zeros)
    if bad.any():
        # Slow path only for unusual spellings (" 1", "1.0"); anything else is an error.
        for r, c in zip(*np.nonzero(bad)):
            cell = chunk[r][c]
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value not in (0.0, 1.0):
                raise DataError(f"{path}, row {row_numbers[r]}, column {names[c]}: label {cell!r} is not 0 or 1")
            ones[r, c] = value == 1.0
    return ones.astype(np.uint8)


def _parse_scores(path: Path, chunk: list[tuple[str, ...]], row_numbers: list[int], names: Sequence[str]) -> np.ndarray:
    try:
        values = np.array(chunk, dtype=np.float64)
    except ValueError:
        for r, cells in enumerate(chunk):
            for c, cell in enumerate(cells):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(f"{path}, row {row_numbers[r]}, column {names[c]}: score {cell!r} is not a number") from None
        raise
    bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        r, c = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(f"{path}, row {row_numbers[r]}, column {names[c]}: score {chunk[r][c]} is not a probability in "
                        "[0, 1] (scores must be sigmoid outputs, not logits)")
    return values


def read_sewerml_csv(path: str | Path) -> tuple[list[str], np.ndarray | None]:
    """Read a Sewer-ML annotation CSV: file names and N x 17 uint8 labels in SEWER_CODES order.

    A CSV holding `Filename` and none of the codes is the public test-split format: labels are None.

    Raises:
        DataError: one line naming the file (and row/column): missing file, empty CSV, missing
            Filename or some of the 17 codes, a label other than 0/1, a duplicate file name.
    """
    path = Path(path)

    def label_columns(header: list[str]) -> Sequence[str]:
        present = [c for c in SEWER_CODES if c in header]
        if present and len(present) < len(SEWER_CODES):
            missing = [c for c in SEWER_CODES if c not in header]
            raise DataError(f"{path}: missing label column(s) {', '.join(missing)}")
        return SEWER_CODES if present else ()

    return _read_columns(path, label_columns, _parse_labels)


def read_scores_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read an official-format score CSV (`Filename` + the 17 codes, sigmoid probabilities): N x 17 float64.

    Raises:
        DataError: one line naming the file (and row/column): missing file or columns, empty CSV,
            duplicate file names, a non-numeric score, a score outside [0, 1].
    """
    filenames, scores = _read_columns(Path(path), lambda header: SEWER_CODES, _parse_scores)
    assert scores is not None
    return filenames, scores


def write_scores_csv(path: str | Path, filenames: Sequence[str], scores: np.ndarray) -> Path:
    """Write scores in the official format (`Filename` + the 17 codes), exact float round trip."""
    path = Path(path)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != (len(filenames), len(SEWER_CODES)):
        raise ValueError(f"scores must have shape ({len(filenames)}, {len(SEWER_CODES)}), got {scores.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([FILENAME, *SEWER_CODES])
        for name, row in zip(filenames, scores.tolist()):
            writer.writerow([name, *map(repr, row)])  # repr of a float is its shortest exact form
    os.replace(tmp, path)  # readers never see a half-written file
    return path


def write_labels_csv(path: str | Path, filenames: Sequence[str], labels: np.ndarray, water_levels: Sequence[int]) -> Path:
    """Write a labelled split in the Sewer-ML layout (`SEWER_CSV_HEADER`).

    VA = water level annotated (> 0); ND = normal without a water annotation; Defect = any code.
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SEWER_CSV_HEADER)
        for name, row, level in zip(filenames, np.asarray(labels), water_levels):
            defect = int(row.any())
            va = int(level > 0)
            writer.writerow([name, int(level), va, *(int(v) for v in row), int(not defect and not va), defect])
    return path


# --------------------------------------------------------------------------------------------- splits

def _find_csv(root: Path, split: str) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder")
    csv_path = root / f"SewerML_{split}.csv"
    if not csv_path.is_file():
        found = sorted(p.name for p in root.glob("*.csv"))[:5]
        hint = f"; CSVs there: {', '.join(found)}" if found else "; it holds no CSV"
        raise DataError(f"{root}: no SewerML_{split}.csv{hint}")
    return csv_path


def _missing_images(image_dir: Path, filenames: list[str]) -> list[str]:
    # One directory listing instead of a million stat calls; names with sub-folders fall back to stat.
    try:
        listed = set(os.listdir(image_dir))
    except OSError as exc:
        raise DataError(f"{image_dir}: cannot list image folder ({exc.strerror or exc})") from None
    return [f for f in filenames if f not in listed and not (image_dir / f).is_file()]


def load_split(
    root: str | Path,
    split: str = "Train",
    image_dir: str | Path | None = None,
    check_images: bool = True,
) -> SewerMLSplit:
    """Load one split of a Sewer-ML-format folder.

    Args:
        root: a folder holding `SewerML_{split}.csv`, or the path of an annotation CSV itself.
        split: "Train", "Val" or "Test" (any name works: it only picks the CSV file).
        image_dir: where the images are. When None: `<folder>/images/` if that exists, else
            `<folder>` itself, where <folder> is `root` (or the CSV's folder when root is a CSV).
        check_images: require every listed image to exist (one directory listing).

    Raises:
        DataError: a missing CSV or image folder, a malformed CSV, or missing images (the error
            names the first few and the count).
    """
    root = Path(root)
    csv_path = _find_csv(root, split)
    folder = csv_path.parent if root.is_file() else root
    if image_dir is not None:
        images = Path(image_dir)
        if not images.is_dir():
            raise DataError(f"{images}: image folder not found")
    else:
        images = folder / "images" if (folder / "images").is_dir() else folder
    filenames, labels = read_sewerml_csv(csv_path)
    if check_images:
        missing = _missing_images(images, filenames)
        if missing:
            raise DataError(f"{images}: {len(missing)} of {len(filenames)} images listed in {csv_path.name} are "
                            f"missing, e.g. {', '.join(missing[:3])}")
    return SewerMLSplit(csv_path, images, filenames, labels)


# -------------------------------------------------------------------------------------------- subsets

def find_subset_csv(root: str | Path, name: str | Path) -> Path | None:
    """A subset CSV as named (absolute, or relative to the working folder), else inside `root`; None if absent.

    Subset files list rows of a full split (e.g. MA-Q2L's released `SewerML_Train_sub_0.0625.csv`):
    the same columns as `SewerML_Train.csv`, the images staying in the full set's image folder.
    """
    name = Path(name).expanduser()
    root = Path(root)
    folder = root.parent if root.is_file() else root
    for candidate in (name, folder / name, folder / name.name):
        if candidate.is_file():
            return candidate
    return None


def image_folder(root: str | Path) -> Path:
    """Where `load_split` looks for a folder's images: `<root>/images/` if it exists, else `root`."""
    root = Path(root)
    folder = root.parent if root.is_file() else root
    return folder / "images" if (folder / "images").is_dir() else folder


def load_split_or_subset(
    root: str | Path,
    split: str,
    subset_csv: str | Path | None = None,
    image_dir: str | Path | None = None,
    fallback_every_kth: int = 16,
    note: Callable[[str], None] | None = print,
) -> tuple[SewerMLSplit, str]:
    """A split, or the rows a subset CSV names; (split, how it was chosen: "full", "csv" or "every_kth").

    `subset_csv` None: the full `SewerML_{split}.csv`. A subset CSV that exists (see
    `find_subset_csv`): its rows, images from `image_dir` or the folder's image folder. One that does
    not exist: every `fallback_every_kth`-th row of the full split, with a note saying so.
    """
    if subset_csv is None or str(subset_csv) == "":
        return load_split(root, split, image_dir=image_dir), "full"
    found = find_subset_csv(root, subset_csv)
    if found is not None:
        images = Path(image_dir) if image_dir is not None else image_folder(root)
        return load_split(found, split, image_dir=images), "csv"
    full = load_split(root, split, image_dir=image_dir)
    if note is not None:
        note(f"note: subset file {subset_csv} not found (as given or in {root}); using every "
             f"{fallback_every_kth}th row of {full.csv_path.name} instead ({-(-len(full) // fallback_every_kth)} rows)")
    return every_kth(full, fallback_every_kth), "every_kth"


def every_kth(split: SewerMLSplit, k: int) -> SewerMLSplit:
    """Rows 0, k, 2k, ... in CSV order (k = 16 gives the "every 16th image" subset)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return split.subset(np.arange(0, len(split), k))


def fraction(split: SewerMLSplit, f: float, seed: int = 0) -> SewerMLSplit:
    """A random `f` share of the rows (round(f * N), at least 1), deterministic by seed, in CSV order."""
    if not 0.0 < f <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {f}")
    n = max(1, round(f * len(split)))
    picked = np.random.default_rng(seed).choice(len(split), size=n, replace=False)
    return split.subset(np.sort(picked))


def stratified_sample(split: SewerMLSplit, n: int, seed: int = 0) -> SewerMLSplit:
    """`n` rows that represent every class, e.g. for INT8 calibration; deterministic by seed, CSV order.

    Greedy, rarest class first: each defect class with positives is topped up to
    min(its count, max(1, n // 36)) rows (36 = 2 x 18 classes, so this uses at most half of
    `n`); normal frames are then added up to their share of the split (round(n * share));
    the rest is filled with further defective rows, then normal ones. Within each step rows are
    taken in one seeded random order. Unlabelled splits get a plain random sample.
    Returns all rows when n >= len(split).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total = len(split)
    if n >= total:
        return split.subset(np.arange(total))
    order = np.random.default_rng(seed).permutation(total)  # a row's position here is its priority
    if split.labels is None:
        return split.subset(np.sort(order[:n]))

    labels = split.labels[order].astype(bool)  # rows in priority order
    selected = np.zeros(total, dtype=bool)  # also in priority order
    quota = max(1, n // (2 * (len(SEWER_CODES) + 1)))
    counts = labels.sum(axis=0)
    for k in np.argsort(counts, kind="stable"):
        if counts[k] == 0:
            continue
        need = min(int(counts[k]), quota) - int((labels[:, k] & selected).sum())
        need = min(need, n - int(selected.sum()))
        if need > 0:
            candidates = np.flatnonzero(labels[:, k] & ~selected)[:need]
            selected[candidates] = True

    normal = ~labels.any(axis=1)
    normal_target = round(n * normal.mean())
    for pool, cap in ((normal, normal_target), (~normal, None), (normal, None)):
        room = n - int(selected.sum())
        if cap is not None:
            room = min(room, cap - int((pool & selected).sum()))
        if room > 0:
            selected[np.flatnonzero(pool & ~selected)[:room]] = True
    return split.subset(np.sort(order[selected]))
