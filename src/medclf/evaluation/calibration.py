"""Calibration: how far confidence is from accuracy, and temperature scaling to close the gap.

ECE and MCE are torchmetrics' top-label calibration errors (equal-width bins over the
confidence of the predicted class); Brier is scikit-learn's definition (binary: on the
positive class; multiclass: summed over classes). Temperature scaling (Guo et al., 2017)
divides the logits by one scalar T fitted on the validation split by minimizing the negative
log-likelihood: it keeps every argmax (accuracy is unchanged) and, for binary tasks, every
ranking (AUC too).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def calibration_errors(probs: np.ndarray, y_true: np.ndarray, bins: int) -> tuple[float, float]:
    """(ECE, MCE) of the top-label confidence."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float64))
    y = torch.from_numpy(np.asarray(y_true, dtype=np.int64))
    n_classes = probs.shape[1]
    ece = multiclass_calibration_error(p, y, n_classes, bins, "l1", validate_args=False)
    mce = multiclass_calibration_error(p, y, n_classes, bins, "max", validate_args=False)
    return float(ece), float(mce)


def brier_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    """sklearn's ``brier_score_loss`` (binary: positive class; multiclass: summed), in numpy
    because sklearn's input validation costs 2 ms per call and this runs per bootstrap
    resample; ``tests/evaluation/test_calibration.py`` checks it against sklearn."""
    onehot = np.asarray(y_true)[:, None] == np.arange(probs.shape[1])[None, :]
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - onehot[:, 1]) ** 2))
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int) -> dict[str, list]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (for the diagram;
    the same bins as ``calibration_errors``, whose ECE is the count-weighted mean gap)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # torchmetrics' bins are [lo, hi) plus one of its own for a confidence of exactly 1.0,
    # which the diagram draws in the last bin
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        accuracy = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    return {
        "edges": edges.tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": accuracy.tolist(),
        "count": count.tolist(),
    }


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y_true)), np.asarray(y_true)].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T > 0 minimizing validation NLL of softmax(logits / T) (bounded 0.05 to 20)."""
    if len(y_true) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: nll(logits, y_true, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)
