"""From a file to the model input, as a ``Preprocessing`` record says: decode to [0, 1] at full
depth (DICOM through its modality LUT and the record's window; ``medclf.data.io``) -> channel
conversion (grayscale <-> RGB) -> optional crop to the foreground (``trim``) -> ``image_size``
squared by squash, letterbox or centre crop (``resize``; ``medclf.geometry``) -> the record's
normalization. The result is CHW float32.

This is the one path every consumer runs: the training cache and batches, evaluation, export
parity, predict and serve; the record itself only describes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.data.io import Decoded, decode
from medclf.errors import MedclfError
from medclf.geometry import to_square, trim
from medclf.preprocessing import Preprocessing

# ITU-R 601 luma weights, the same ones PIL uses for RGB -> L (images and statistics alike).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx3 in [0,1] -> CxHxW with ``channels`` channels."""
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise MedclfError(f"unsupported image array shape {arr.shape}")
    if arr.shape[0] == channels:
        return arr
    if channels == 1:
        return np.tensordot(LUMA, arr, axes=1)[None].astype(np.float32)
    return np.repeat(arr, 3, axis=0)


def decode_file(
    prep: Preprocessing, source: str | Path | bytes, name: str | None = None
) -> Decoded:
    """Decode with the record's window and pixel budget (see ``medclf.data.io``)."""
    return decode(source, name=name, window=prep.window, max_pixels=prep.max_pixels)


def fit(prep: Preprocessing, image: np.ndarray) -> np.ndarray:
    """A decoded HxW(x3) image -> CxHxW at the record's channels, trim and size."""
    return to_square(
        trim(to_channels(image, prep.channels), prep.trim), prep.image_size, prep.resize
    )


def load(prep: Preprocessing, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode, convert channels and resize: CxHxW float32 in [0,1], before normalization."""
    return fit(prep, decode_file(prep, source, name=name).array)


def model_input(
    prep: Preprocessing, source: str | Path | bytes, name: str | None = None
) -> np.ndarray:
    """The model input for one image: CxHxW float32, normalized."""
    return prep.normalize_array(load(prep, source, name=name))
