"""Test-time augmentation: the model's logits averaged over a few views of each input.

One definition for evaluate, predict, serve and ONNX inference: the mode is part of the
decision record (``medclf.decision``), so the temperature, thresholds and conformal sets fitted
on validation are fitted on the same averaged logits that every consumer computes.

- ``flip``: the image and its left-right mirror.
- ``flip+rot``: those two plus the image rotated by +-8 degrees, inside the range that
  training augmentation covers (``data.augment.rotate_degrees``, 10 by default), with the
  border pixels extended as the training augmentation does. Quarter turns are not used: a
  network trained on upright scans is not invariant to them.

Views are made on the normalized NCHW input with numpy/scipy, so a backend (PyTorch, ONNX
Runtime) only ever sees ordinary batches. Logits are averaged (not probabilities) so the
temperature keeps its meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TTA_MODES = ("none", "flip", "flip+rot")
ROTATION_DEGREES = 8.0


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.rotate(x, degrees, axes=(2, 3), reshape=False, order=1, mode="nearest")


def views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of an NCHW batch for ``mode``; the first is always the batch itself."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}")
    out = [x]
    if mode in ("flip", "flip+rot"):
        out.append(np.ascontiguousarray(x[..., ::-1]))
    if mode == "flip+rot":
        out += [_rotate(x, ROTATION_DEGREES), _rotate(x, -ROTATION_DEGREES)]
    return [v.astype(np.float32, copy=False) for v in out]


def averaged_logits(
    logits: Callable[[np.ndarray], np.ndarray], x: np.ndarray, mode: str
) -> np.ndarray:
    """Mean of ``logits(view)`` over the views of ``x``."""
    if mode == "none":
        return logits(x)
    return np.mean([logits(v) for v in views(x, mode)], axis=0)
