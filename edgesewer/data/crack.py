"""Crack segmentation datasets on disk: DeepCrack, CrackForest, CRACK500 and a plain folder (no torch).

Layouts (SPEC section 4), detected from the folder:

    deepcrack    train_img/ train_lab/ test_img/ test_lab/   image .jpg + same-stem .png mask
                 (also the synthetic crack set's layout)
    crackforest  image/NNN.jpg + groundTruth/NNN.mat (MATLAB struct groundTruth{1}.Segmentation,
                 1 = background, 2 = crack); only images with a .mat are labelled
    crack500     <split>.txt listing "<image> <mask>" per line, relative to the root
                 (traincrop/ valcrop/ testcrop/ hold the files)
    folder       images/ + masks/ (same stem), optionally one level down per split:
                 <split>/images + <split>/masks

Masks: 0/255 images binarised at > 127; 0/1 images taken as is; CrackForest .mat files
`Segmentation == 2`. Errors name the offending file on one line (DataError).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgesewer.data.crack_errata import drop_label_errors
from edgesewer.data.images import read_image
from edgesewer.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg")
LAYOUTS = ("deepcrack", "crackforest", "crack500", "folder")
# A mask is refused as non-binary when more than this share of pixels is neither dark (<= 10) nor bright (>= 245):
# anti-aliased or JPEG-compressed borders pass, a grey-level photo or a probability map does not.
MAX_GREY_FRACTION = 0.02
# The SCNet paper's protocol (section V-A): where a set ships no test split, 20 % of it is held out for
# testing; model selection and the decision threshold come from a validation part carved out of the
# training images (10 % of them here), never from the test split.
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
SPLITS = ("all", "trainval", "train", "val", "test")


@dataclass(frozen=True)
class CrackPair:
    image: Path
    mask: Path


def detect_layout(root: Path) -> str:
    """Name of the layout of `root` (one of LAYOUTS), or DataError listing what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: crack dataset folder not found")
    if (root / "train_img").is_dir() or (root / "test_img").is_dir():
        return "deepcrack"
    if (root / "groundTruth").is_dir() and (root / "image").is_dir():
        return "crackforest"
    if any((root / f"{s}.txt").is_file() for s in ("train", "val", "test")) or (root / "traincrop").is_dir():
        return "crack500"
    if (root / "images").is_dir() or any((root / s / "images").is_dir() for s in ("train", "val", "test")):
        return "folder"
    raise DataError(f"{root}: not a crack dataset (expected train_img/+train_lab/, image/+groundTruth/, "
                    "train.txt/test.txt, or images/+masks/)")


def list_pairs(root: Path, split: str = "train", layout: str | None = None) -> list[CrackPair]:
    """(image, mask) pairs of one split, sorted by image name; see `split_pairs`."""
    return split_pairs(root, split, layout)[0]


def split_pairs(root: Path, split: str = "train", layout: str | None = None) -> tuple[list[CrackPair], list[str]]:
    """((image, mask) pairs of one split sorted by image name, ["<image>: <reason>" per known label error left out]).

    Splits: test, trainval (every labelled image not in test), val, train (trainval minus val) and
    all. A split the set ships is used as it is (DeepCrack train/test, CRACK500 train/val/test,
    a folder's <split>/ subfolders); a missing one is derived deterministically: test = 20 % of the
    labelled images spread evenly over the sorted names (CrackForest, a plain folder), val = 10 %
    of trainval spread the same way. Other names are passed through (a folder's or list's own split).
    The known label errors of `crack_errata` leave after the split is drawn, so every other image keeps
    its split.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    listers = {"deepcrack": _deepcrack_pairs, "crackforest": _crackforest_pairs, "crack500": _crack500_pairs,
               "folder": _folder_pairs}
    if layout not in listers:
        raise DataError(f"unknown crack layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    pairs = _split_pairs(listers[layout], root, split, _native_splits(root, layout))
    pairs, dropped = drop_label_errors(pairs, layout, lambda p: p.mask.as_posix(), lambda p: read_mask(p.mask))
    if not pairs:
        raise DataError(f"{root}: no images in the {split!r} split ({layout} layout)")
    return pairs, [f"{pair.image.name}: {reason}" for pair, reason in dropped]


def _native_splits(root: Path, layout: str) -> tuple[str, ...]:
    """The splits a set ships; () when it ships one undivided pool ("all")."""
    if layout == "deepcrack":
        return tuple(s for s in ("train", "test") if (root / f"{s}_img").is_dir())
    if layout == "crack500":
        return tuple(s for s in ("train", "val", "test") if (root / f"{s}.txt").is_file() or (root / f"{s}crop").is_dir())
    if layout == "folder":
        return tuple(s for s in ("train", "val", "test") if (root / s / "images").is_dir())
    return ()


def _split_pairs(lister, root: Path, split: str, native: tuple[str, ...]) -> list[CrackPair]:
    if split in native and not (split == "train" and "val" not in native):
        return lister(root, split)
    if split not in SPLITS:
        if not native:
            raise DataError(f"{root}: this set ships no split; choose one of {', '.join(SPLITS)}")
        return lister(root, split)  # the lister names what it has
    if split == "all":
        return lister(root, "all") if not native else [p for s in native for p in lister(root, s)]
    if split in ("test", "trainval") and "test" not in native:
        pool = lister(root, "all") if not native else [p for s in native for p in lister(root, s)]
        trainval, test = hold_out(pool, TEST_FRACTION)
        return test if split == "test" else trainval
    if split == "trainval":
        return [p for s in ("train", "val") if s in native for p in lister(root, s)]
    if "val" in native:  # split is train or val here and the set ships both
        return lister(root, split)
    train, val = hold_out(_split_pairs(lister, root, "trainval", native), VAL_FRACTION)
    return val if split == "val" else train


def spread_indices(n: int, fraction: float) -> list[int]:
    """round(n x fraction) indices (at least 1 when n >= 2) spread evenly over range(n): deterministic and
    independent of any random generator, so a split never changes between versions or machines."""
    count = min(n - 1, max(1, round(n * fraction))) if n >= 2 else 0
    return [int((k + 0.5) * n / count) for k in range(count)]


def hold_out(pairs: list[CrackPair], fraction: float) -> tuple[list[CrackPair], list[CrackPair]]:
    """(kept, held out): `spread_indices` of the name-sorted pairs are held out."""
    held = set(spread_indices(len(pairs), fraction))
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _same_stem_mask(image: Path, mask_dir: Path) -> Path:
    for suffix in MASK_SUFFIXES:
        for stem in (image.stem, f"{image.stem}_mask"):
            candidate = mask_dir / f"{stem}{suffix}"
            if candidate.is_file() and candidate != image:
                return candidate
    raise DataError(f"{image}: no mask for this image (expected {mask_dir / image.stem}.png)")


def _deepcrack_pairs(root: Path, split: str) -> list[CrackPair]:
    if split not in ("train", "test"):
        raise DataError(f"{root}: DeepCrack layout ships splits train and test, not {split!r} "
                        f"(derived: {', '.join(SPLITS)})")
    image_dir, mask_dir = root / f"{split}_img", root / f"{split}_lab"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder missing (DeepCrack layout needs {split}_img/ and {split}_lab/)")
    return [CrackPair(p, _same_stem_mask(p, mask_dir)) for p in _images_in(image_dir)]


def _crackforest_pairs(root: Path, split: str) -> list[CrackPair]:
    """Every labelled image (the set ships no split; `list_pairs` derives them)."""
    pairs = []
    for mat in sorted((root / "groundTruth").glob("*.mat")):
        images = [root / "image" / f"{mat.stem}{s}" for s in IMAGE_SUFFIXES]
        image = next((p for p in images if p.is_file()), None)
        if image is None:
            raise DataError(f"{mat}: ground truth without an image (expected image/{mat.stem}.jpg)")
        pairs.append(CrackPair(image, mat))
    return pairs


def _crack500_pairs(root: Path, split: str) -> list[CrackPair]:
    listing = root / f"{split}.txt"
    if listing.is_file():
        pairs = []
        for line_no, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(f"{listing}:{line_no}: expected '<image> <mask>', got {line.strip()!r}")
            image, mask = root / fields[0], root / fields[1]
            for path, what in ((image, "image"), (mask, "mask")):
                if not path.is_file():
                    raise DataError(f"{listing}:{line_no}: {what} file {path} not found")
            pairs.append(CrackPair(image, mask))
        return pairs
    crop_dir = root / f"{split}crop"
    if not crop_dir.is_dir():
        raise DataError(f"{root}: CRACK500 layout has neither {split}.txt nor {split}crop/")
    # Without a list, pair every photo (.jpg) with its mask (<stem>.png or <stem>_mask.png) in the same folder.
    photos = [p for p in _images_in(crop_dir) if p.suffix.lower() in (".jpg", ".jpeg")]
    return [CrackPair(p, _same_stem_mask(p, crop_dir)) for p in photos]


def _folder_pairs(root: Path, split: str) -> list[CrackPair]:
    base = root if split == "all" else root / split
    image_dir, mask_dir = base / "images", base / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder missing (plain layout needs images/ and masks/)")
    return [CrackPair(p, _same_stem_mask(p, mask_dir)) for p in _images_in(image_dir)]


def read_mask(path: Path) -> np.ndarray:
    """Crack mask as bool HxW: .mat -> groundTruth Segmentation == 2; images -> > 127 (or == 1 for 0/1 masks)."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        return _read_crackforest_mat(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    mask = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataError(f"{path}: not a readable mask image")
    peak = int(mask.max())
    if peak <= 1:
        return mask == 1
    if peak <= 127:
        raise DataError(f"{path}: mask values go up to {peak} only; expected 0/255 (or 0/1) crack masks, "
                        "not class indices")
    grey = np.count_nonzero((mask > 10) & (mask < 245)) / mask.size
    if grey > MAX_GREY_FRACTION:
        raise DataError(f"{path}: mask is not binary ({grey:.0%} of pixels are grey levels between 10 and 245)")
    return mask > 127


def _read_crackforest_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat  # scipy only when a CrackForest set is read

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read MATLAB file ({exc})") from None
    truth = mat.get("groundTruth")
    if truth is None:
        raise DataError(f"{path}: no 'groundTruth' variable (CrackForest .mat expected)")
    if isinstance(truth, np.ndarray):  # a cell array of annotations: take the first
        truth = truth.flat[0]
    segmentation = getattr(truth, "Segmentation", None)
    if segmentation is None:
        raise DataError(f"{path}: groundTruth has no 'Segmentation' field")
    return np.asarray(segmentation) == 2


def load_pair(pair: CrackPair) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 HxWx3, crack mask bool HxW); DataError when the sizes differ."""
    rgb = read_image(pair.image)
    mask = read_mask(pair.mask)
    if mask.shape != rgb.shape[:2]:
        raise DataError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {pair.image.name} is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}")
    return rgb, mask


class CrackFolder:
    """A crack dataset split as a sequence of (rgb uint8, mask bool) pairs, read lazily from disk."""

    def __init__(self, root: str | Path, split: str = "train", layout: str | None = None) -> None:
        self.root = Path(root)
        self.layout = layout or detect_layout(self.root)
        self.split = split
        self.pairs, self.excluded = split_pairs(self.root, split, self.layout)  # excluded: known label errors

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return load_pair(self.pairs[index])

    def __repr__(self) -> str:
        return f"CrackFolder({str(self.root)!r}, split={self.split!r}, layout={self.layout!r}, n={len(self)})"
