"""Decode any supported image file to a float32 array in [0, 1] at full bit depth.

16-bit images are scaled by 65535, not squeezed through 8 bits; palette images are resolved;
alpha is dropped. DICOM goes through ``medclf.data.dicom`` (modality LUT, then the configured
window). The result is (H, W) for grayscale and (H, W, 3) for color. Every failure is a
MedclfError that names the file, so a bad image is reported instead of killing a run.

Sizes are bounded before decoding: the header's width x height x frames x samples must fit
``max_pixels`` (``data.max_pixels``), because a 100 KB PNG or DICOM can claim a billion
pixels. Decoding keeps few full-size copies (about 8 bytes per pixel for a 16-bit image).
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medclf.data.dicom import has_dicm_preamble, looks_like_dicom, minmax
from medclf.errors import MedclfError
from medclf.image_settings import (
    FILE_WINDOW,
    check_pixel_budget,
    normalize_window,
)

# medclf checks every raster header against ``max_pixels`` itself, before decoding, so Pillow's
# own process-wide bomb limit (89 Mpx warning, 179 Mpx error) is switched off: it would
# otherwise override the configured budget in both directions and surface as a traceback.
Image.MAX_IMAGE_PIXELS = None
# Images smaller than this (either side, pixels) are reported: usually a thumbnail, an icon
# or a broken export, and their prediction is an extrapolation from a few pixels.
TINY_SIDE = 16
_GRAY_MODES = frozenset({"1", "L", "LA", "F", "I", "I;16", "I;16B", "I;16L", "I;16N"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
# The only Pillow decoders medclf lets near a file (by content, whatever its name says): the
# formats above. Pillow has dozens more, some of which hand the file to other programs (EPS
# to Ghostscript); an upload must not reach them.
RASTER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")
READABLE = "PNG, JPEG, TIFF, BMP, GIF, WEBP, DICOM"

# Max value by PIL integer mode, for scaling to [0, 1]. Mode "I" (32-bit int) is how Pillow
# opens some 16-bit files, so it is scaled as 16-bit; values above 65535 are clipped.
_INT_MODE_MAX = {
    "I;16": 65535.0,
    "I;16B": 65535.0,
    "I;16L": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,
}
_MODE_BITS = {"1": 1, "F": 32, **{m: 16 for m in _INT_MODE_MAX}}


def tiny_image_warning(label: str, width: int, height: int) -> str | None:
    """A one-line warning for an image too small to classify meaningfully, else None."""
    if min(width, height) >= TINY_SIDE:
        return None
    return (
        f"{label}: image is only {width}x{height} px (smaller than {TINY_SIDE} px); its "
        "prediction is unreliable"
    )


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the facts about its file that the data check reports."""

    array: np.ndarray
    kind: str  # "png", "jpeg", ..., or "dicom"
    mode: str  # PIL mode, or the DICOM photometric interpretation
    bits: int  # bits per sample as stored
    width: int
    height: int


# A sample inside a MedMNIST-style .npz file: "<file>.npz::<key>[<index>]".
_NPZ_REF = re.compile(r"^(?P<file>.+\.npz)::(?P<key>\w+)\[(?P<index>\d+)\]$")


def npz_ref(npz: str | Path, key: str, index: int) -> str:
    return f"{npz}::{key}[{index}]"


@functools.lru_cache(maxsize=4)
def _npz_arrays(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    """Every array of an .npz, loaded once per process: indexing ``np.load(...)[key]`` per
    image would re-read and re-inflate the whole array each time."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    try:
        return _npz_arrays(str(p), p.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:
        raise MedclfError(f"{p}: cannot read .npz file ({exc})") from exc


def _decode_npz_ref(ref: re.Match[str], max_pixels: int | None) -> Decoded:
    arrays = load_npz(ref["file"])
    key, index = ref["key"], int(ref["index"])
    label = f"{ref['file']}::{key}[{index}]"
    if key not in arrays or index >= len(arrays[key]):
        raise MedclfError(f"{label}: no such image in the .npz file")
    raw = np.asarray(arrays[key][index])
    if raw.ndim >= 2:
        check_pixel_budget(
            label, raw.shape[1], raw.shape[0], 1, int(np.prod(raw.shape[2:])), max_pixels
        )
    if raw.ndim == 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (3, 4)):
        raise MedclfError(f"{label}: expected an HxW or HxWx3 image, got shape {raw.shape}")
    raw = raw[..., :3] if raw.ndim == 3 else raw
    if np.issubdtype(raw.dtype, np.integer):
        bits = 8 if raw.max(initial=0) <= 255 else 16
        arr = raw.astype(np.float32) / (255.0 if bits == 8 else 65535.0)
    else:
        bits, arr = 32, minmax(raw.astype(np.float32))
    mode = "L" if arr.ndim == 2 else "RGB"
    return Decoded(
        np.clip(arr, 0, 1).astype(np.float32), "npz", mode, bits, arr.shape[1], arr.shape[0]
    )


def sample_sha256(path: str | Path) -> str:
    """Content hash of a sample: the file's bytes, or an .npz image's array bytes."""
    ref = _NPZ_REF.match(str(path))
    if ref:
        arr = load_npz(ref["file"])[ref["key"]][int(ref["index"])]
        return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def is_image_file(path: Path) -> bool:
    """Raster images by suffix, DICOM by suffix or (extension-less) by its preamble."""
    if path.name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or looks_like_dicom(path)


def _scaled(raw: np.ndarray, scale: float, clip: bool = False) -> np.ndarray:
    """float32 ``raw / scale`` with one full-size float copy (in-place arithmetic)."""
    arr = raw.astype(np.float32)
    del raw
    arr /= np.float32(scale)
    if clip:
        np.clip(arr, 0.0, 1.0, out=arr)
    return arr


def _to_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _INT_MODE_MAX:
        # 32-bit "I" may hold values outside 0..65535; 16-bit modes cannot.
        return _scaled(np.asarray(img), _INT_MODE_MAX[mode], clip=mode == "I")
    if mode == "F":
        return minmax(np.asarray(img, dtype=np.float32))
    if mode in ("L", "1"):
        return _scaled(np.asarray(img.convert("L")), 255.0)
    if mode == "LA":
        return _scaled(np.asarray(img.getchannel("L")), 255.0)
    # RGB, RGBA, P, CMYK, YCbCr, ...: resolve to RGB (palette looked up, alpha dropped).
    return _scaled(np.asarray(img.convert("RGB")), 255.0)


def _decode_raster(
    stream: io.BytesIO | Path, label: str, window: Any, max_pixels: int | None
) -> Decoded:
    try:
        # Image.open reads the header only; the budget is checked before load() decodes.
        with Image.open(stream, formats=RASTER_FORMATS) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:  # an animation or a multi-page file: which frame would be meant?
                raise MedclfError(
                    f"{label}: {img.format} with {frames} frames; send one image per file"
                )
            width, height = img.size
            samples = 1 if img.mode in _GRAY_MODES else 3
            check_pixel_budget(label, width, height, 1, samples, max_pixels)
            img.load()
            arr = _to_array(img)
            kind = (img.format or "unknown").lower()
            mode = img.mode
    except UnidentifiedImageError as exc:
        raise MedclfError(f"{label}: not a readable image ({READABLE})") from exc
    except (OSError, ValueError, SyntaxError, MemoryError, Image.DecompressionBombError) as exc:
        raise MedclfError(f"{label}: corrupt or truncated image ({exc})") from exc
    if window == "minmax":
        arr = minmax(arr)
    elif window != FILE_WINDOW:
        raise MedclfError(
            f"{label}: data.window={window!r} is a window in DICOM modality units (e.g. HU) and "
            "this file is not DICOM; send the DICOM file or use window 'dicom' or 'minmax'"
        )
    bits = _MODE_BITS.get(mode, 8)
    return Decoded(arr, kind, mode, bits, arr.shape[1], arr.shape[0])


def decode(
    source: str | Path | bytes,
    name: str | None = None,
    window: Any = FILE_WINDOW,
    max_pixels: int | None = None,
) -> Decoded:
    """Decode ``source`` (a path or the bytes of a file) with its facts; see module docstring.
    ``max_pixels`` bounds the decoded size (None: ``DEFAULT_MAX_PIXELS``)."""
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded file")
    spec = normalize_window(window)
    ref = None if isinstance(source, bytes) else _NPZ_REF.match(str(source))
    if ref:
        return _decode_npz_ref(ref, max_pixels)
    if isinstance(source, bytes):
        if not source:
            raise MedclfError(f"{label}: empty file (0 bytes); send an image file")
        is_dicom = has_dicm_preamble(source)
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MedclfError(f"{label}: file not found")
        if path.stat().st_size == 0:
            raise MedclfError(f"{label}: empty file (0 bytes); remove or replace it")
        is_dicom = looks_like_dicom(path)
        stream = path
    if is_dicom:
        from medclf.data.dicom import read_dicom

        dcm = read_dicom(
            source if isinstance(source, bytes) else Path(source), label, spec, max_pixels
        )
        h, w = dcm.array.shape[:2]
        return Decoded(dcm.array, "dicom", dcm.photometric, dcm.bits_stored, w, h)
    return _decode_raster(stream, label, spec, max_pixels)


def read_image(
    source: str | Path | bytes,
    name: str | None = None,
    window: Any = FILE_WINDOW,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode ``source`` to float32 in [0, 1]: (H, W) or (H, W, 3)."""
    return decode(source, name=name, window=window, max_pixels=max_pixels).array
