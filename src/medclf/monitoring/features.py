"""Per-image intensity statistics: the numeric features input drift is measured on."""

from __future__ import annotations

import numpy as np

INTENSITY_FEATURES = ("mean", "std", "p01", "p50", "p99")


def intensity_features(image: np.ndarray) -> np.ndarray:
    """One image as the model sees it before normalization (H x W or C x H x W in [0, 1],
    after the run's window and resize) -> the values of ``INTENSITY_FEATURES``. Taken after
    the window, so a scanner or protocol change shows as the model would meet it."""
    x = np.asarray(image, np.float64).ravel()
    p01, p50, p99 = np.percentile(x, [1, 50, 99])
    return np.array([x.mean(), x.std(), p01, p50, p99])
