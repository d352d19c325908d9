"""Label-free performance: what accuracy and per-class sensitivity the calibrated
probabilities of live traffic predict, with an interval, before any label arrives.

If the probabilities are calibrated (medclf fits the temperature on the validation split and
``evaluate`` reports the calibration error), image i's true class is distributed as its
probability row. The estimate is then the expectation over those labels (accuracy: the mean
confidence of the predicted class), and its interval comes from labels drawn from the rows
(a parametric bootstrap): the range the realised metric falls in if calibration holds. A
realised metric outside it, once labels arrive, is itself a finding (the calibration, hence
the model, no longer fits this traffic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS_PER_CHUNK = 100  # labels drawn for this many bootstrap replicates at once (memory)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class LabelFree:
    accuracy: Estimate
    sensitivity: dict[str, Estimate]  # per class; NaN where no image is expected in it
    images: int


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    if np.all(np.isnan(draws)):
        return float("nan"), float("nan")
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _drawn_labels(cumulative: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """draws x n labels, row i's from its probabilities (inverse transform sampling)."""
    u = rng.random((draws, cumulative.shape[0], 1))
    return np.minimum((u > cumulative[None]).sum(axis=2), cumulative.shape[1] - 1)


def label_free(
    probabilities: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    draws: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> LabelFree:
    """The expected accuracy and per-class sensitivity of N x K calibrated probabilities,
    each with its ``confidence`` interval from ``draws`` label draws."""
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or p.shape[1] != len(class_names) or p.shape[0] == 0:
        raise ValueError("probabilities must be N x classes with N > 0")
    p = p / p.sum(axis=1, keepdims=True)
    predicted = p.argmax(axis=1)
    k = p.shape[1]
    expected_positives = p.sum(axis=0)
    expected_hits = np.array([p[predicted == c, c].sum() for c in range(k)])
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = expected_hits / expected_positives
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(p, axis=1)
    accuracy_draws, sensitivity_draws = [], []
    for start in range(0, draws, DRAWS_PER_CHUNK):
        labels = _drawn_labels(cumulative, min(DRAWS_PER_CHUNK, draws - start), rng)
        hits = labels == predicted[None]
        accuracy_draws.append(hits.mean(axis=1))
        positives = np.stack([(labels == c).sum(axis=1) for c in range(k)], axis=1)
        true_pos = np.stack([(hits & (labels == c)).sum(axis=1) for c in range(k)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity_draws.append(np.where(positives > 0, true_pos / positives, np.nan))
    acc = np.concatenate(accuracy_draws)
    sens = np.concatenate(sensitivity_draws)
    return LabelFree(
        accuracy=Estimate(
            float(p[np.arange(len(p)), predicted].mean()), *_interval(acc, confidence)
        ),
        sensitivity={
            name: Estimate(float(sensitivity[c]), *_interval(sens[:, c], confidence))
            for c, name in enumerate(class_names)
        },
        images=len(p),
    )
