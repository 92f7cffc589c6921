"""Reading images from disk as RGB uint8 arrays (OpenCV, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgesewer.errors import DataError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    Grayscale images are expanded to three channels and an alpha channel is dropped
    (OpenCV's IMREAD_COLOR). Decoding from bytes rather than `cv2.imread` keeps non-ASCII
    paths working and lets us tell "missing" from "empty" from "corrupt".

    Raises:
        DataError: "<path>: ..." when the file is missing, empty or cannot be decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise DataError(f"{path}: image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
