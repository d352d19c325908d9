"""How a decoded image of any size and aspect becomes the square model input.

Real folders mix framings: on the public chest-CT set the test images show the body smaller in
a wider black frame (with the scanner table) than the training images, and each class has its
own typical size and aspect. A model that sees the frame learns the frame. Two steps, both
recorded in the preprocessing record so every consumer does the same:

- ``trim``: ``none`` keeps the whole image; ``foreground`` crops to the largest connected
  region that differs from the background (the median of the image's outer border), with a
  small margin. It keeps the whole image when that region is tiny or fills it already.
- ``resize``: ``squash`` scales each side to the input size (aspect changes), ``letterbox``
  scales the longer side and pads the shorter with the background value (aspect kept), and
  ``crop`` scales the shorter side and cuts the centre square.

Connected components come from scipy.ndimage on a copy at most ``_MASK_SIDE`` pixels wide, so
the cost does not grow with a 4k image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

RESIZE_MODES = ("squash", "letterbox", "crop")
TRIM_MODES = ("none", "foreground")
# Records written before letterbox/crop existed said "bilinear" for what is now "squash".
LEGACY_RESIZE = {"bilinear": "squash"}
_MASK_SIDE = 256
_FOREGROUND_DELTA = 0.1  # intensity difference from the background, on the [0, 1] image
_MIN_AREA = 0.05  # a region smaller than this share of the image is not "the subject"
_MARGIN = 0.02  # of the region's size, on each side


def border_value(chw: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost rows and columns: the background intensity."""
    edges = np.concatenate([chw[:, 0, :], chw[:, -1, :], chw[:, :, 0], chw[:, :, -1]], axis=1)
    return np.median(edges, axis=1).astype(np.float32)


def foreground_box(chw: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the largest region unlike the background, or None when
    trimming would not help (no region, a tiny one, or one that already fills the image)."""
    _, h, w = chw.shape
    step = max(1, int(np.ceil(max(h, w) / _MASK_SIDE)))
    small = chw[:, ::step, ::step]
    diff = np.abs(small - border_value(chw)[:, None, None]).max(axis=0)
    mask = ndimage.binary_opening(diff > _FOREGROUND_DELTA, iterations=1)
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < _MIN_AREA * mask.size:
        return None
    rows = np.flatnonzero((labels == largest).any(axis=1))
    cols = np.flatnonzero((labels == largest).any(axis=0))
    top, bottom = rows[0] * step, min(h, (rows[-1] + 1) * step)
    left, right = cols[0] * step, min(w, (cols[-1] + 1) * step)
    pad_y, pad_x = int(_MARGIN * (bottom - top)), int(_MARGIN * (right - left))
    top, bottom = max(0, top - pad_y), min(h, bottom + pad_y)
    left, right = max(0, left - pad_x), min(w, right + pad_x)
    if (bottom - top) * (right - left) >= 0.98 * h * w:
        return None
    return top, bottom, left, right


def trim(chw: np.ndarray, mode: str) -> np.ndarray:
    if mode == "none":
        return chw
    box = foreground_box(chw)
    if box is None:
        return chw
    top, bottom, left, right = box
    return chw[:, top:bottom, left:right]


def _resize_planes(chw: np.ndarray, width: int, height: int) -> np.ndarray:
    # one plane at a time through PIL's antialiased float resize, no full-size copies
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for plane in chw
    ]
    return np.stack(planes).astype(np.float32)


def to_square(chw: np.ndarray, size: int, mode: str) -> np.ndarray:
    """CxHxW -> CxSxS by ``mode`` (see the module docstring)."""
    mode = LEGACY_RESIZE.get(mode, mode)
    _, h, w = chw.shape
    if (h, w) == (size, size):
        return np.ascontiguousarray(chw, dtype=np.float32)
    if mode == "squash" or h == w:
        return _resize_planes(chw, size, size)
    if mode == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.empty((chw.shape[0], size, size), dtype=np.float32)
        out[:] = border_value(chw)[:, None, None]
        y, x = (size - nh) // 2, (size - nw) // 2
        out[:, y : y + nh, x : x + nw] = _resize_planes(chw, nw, nh)
        return out
    if mode == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        return _resize_planes(chw[:, y : y + side, x : x + side], size, size)
    raise ValueError(f"unknown resize mode {mode!r}")
