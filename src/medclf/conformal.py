"""Split-conformal prediction sets: "the true class is in this set 90% of the time".

Method: LAC (least ambiguous set-valued classifier; Sadinle, Lei and Wasserman 2019). The
score of a validation image is 1 - (calibrated probability of its true class); ``qhat`` is
the ceil((n + 1)(1 - alpha)) / n empirical quantile of those scores; a new image's set is every
class whose probability reaches 1 - qhat. Among split-conformal methods LAC gives the smallest
sets on average for the guaranteed marginal coverage, which is what a reader acts on; APS
adapts set size to difficulty better but gives larger sets on small, well-calibrated
validation splits like medclf's. The guarantee needs validation and new images to be
exchangeable (same population): the data check's split-shift findings say when they are not.

Written here rather than taken from MAPIE: it is one quantile and one comparison on
probabilities medclf already has, shared by evaluate, predict, serve and the ONNX record,
and MAPIE's estimator wrappers do not fit precomputed, temperature-scaled probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METHOD = "lac"


@dataclass(frozen=True)
class ConformalFit:
    alpha: float
    qhat: float
    n: int
    method: str = METHOD

    def to_dict(self) -> dict[str, float | int | str]:
        return {"method": self.method, "alpha": self.alpha, "qhat": self.qhat, "n": self.n}


def fit_lac(probs: np.ndarray, y: np.ndarray, alpha: float) -> ConformalFit:
    """``qhat`` from calibrated validation probabilities ``probs`` (N x K) and labels ``y``."""
    n = len(y)
    scores = 1.0 - probs[np.arange(n), y]
    # qhat is the k-th smallest score, k = ceil((n + 1)(1 - alpha)): exactly the rank whose
    # coverage law expected_coverage states. (np.quantile(scores, k / n, method="higher"),
    # the usual one-liner, picks rank k + 1 whenever k < n: with 72 images the promise becomes
    # 0.918 instead of 0.904.) The small tolerance keeps 10 * 0.9 from rounding up to 10.
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    # too few images for this alpha: the set must be every class to keep the guarantee
    qhat = 1.0 if k > n else float(np.sort(scores)[k - 1])
    return ConformalFit(alpha=float(alpha), qhat=qhat, n=int(n))


def expected_coverage(n: int, alpha: float, level: float = 0.95) -> tuple[float, float]:
    """Where the coverage of a new, large split from the validation images' population falls,
    given that ``qhat`` came from only ``n`` of them: coverage conditional on the calibration
    set is Beta(n + 1 - l, l) with l = floor((n + 1) alpha) (Vovk 2012; Angelopoulos and
    Bates 2021, section 3.2). With 72 validation images and alpha 0.1 this is about
    [0.83, 0.96]: a test coverage outside it says the test images are not like the
    validation images, not that the method failed."""
    from scipy.stats import beta

    rank = math.floor((n + 1) * alpha)
    if rank < 1:  # every class is in every set: coverage 1
        return 1.0, 1.0
    dist = beta(n + 1 - rank, rank)
    tail = (1 - level) / 2
    return float(dist.ppf(tail)), float(dist.ppf(1 - tail))


def set_mask(probs: np.ndarray, qhat: float) -> np.ndarray:
    """Boolean N x K (or K) membership; a set is never empty (the top class is added, which
    only raises coverage)."""
    probs = np.asarray(probs)
    mask = probs >= 1.0 - qhat - 1e-12
    top = probs.argmax(axis=-1)
    if mask.ndim == 1:
        mask[top] = True
    else:
        mask[np.arange(len(probs)), top] = True
    return mask


def coverage_and_size(mask: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Empirical coverage (true class in the set) and mean set size."""
    return float(mask[np.arange(len(y)), y].mean()), float(mask.sum(axis=1).mean())
