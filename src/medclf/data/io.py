"""Decode any supported image file to a float32 array in [0, 1] at full bit depth.

16-bit images are scaled by 65535, not squeezed through 8 bits; palette images are resolved;
alpha is dropped. The result is (H, W) for grayscale and (H, W, 3) for color. Every failure is
a MedclfError that names the file, so a bad image is reported instead of killing a run.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medclf.errors import MedclfError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})

# Max value by PIL integer mode, for scaling to [0, 1]. Mode "I" (32-bit int) is how Pillow
# opens some 16-bit files, so it is scaled as 16-bit; values above 65535 are clipped.
_INT_MODE_MAX = {
    "I;16": 65535.0,
    "I;16B": 65535.0,
    "I;16L": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,
}


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _to_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _INT_MODE_MAX:
        arr = np.asarray(img, dtype=np.float64) / _INT_MODE_MAX[mode]
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(img.getchannel("L"), dtype=np.float32) / 255.0
    # RGB, RGBA, P, CMYK, YCbCr, ...: resolve to RGB (palette looked up, alpha dropped).
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def read_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode ``source`` (a path or the bytes of a file) to float32 in [0, 1]."""
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded file")
    if isinstance(source, bytes):
        if not source:
            raise MedclfError(f"{label}: empty file (0 bytes); send an image file")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MedclfError(f"{label}: file not found")
        if path.stat().st_size == 0:
            raise MedclfError(f"{label}: empty file (0 bytes); remove or replace it")
        stream = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                img.load()
                return _to_array(img)
    except UnidentifiedImageError as exc:
        raise MedclfError(f"{label}: not a readable image (PNG, JPEG, TIFF, BMP)") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise MedclfError(f"{label}: corrupt or truncated image ({exc})") from exc
