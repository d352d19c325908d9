"""Calibration: how far confidence is from accuracy, and temperature scaling to close the gap.

ECE and MCE are torchmetrics' top-label calibration errors (equal-width bins over the
confidence of the predicted class); Brier is scikit-learn's definition (binary: on the
positive class; multiclass: summed over classes). Temperature scaling (Guo et al., 2017)
divides the logits by one scalar T fitted on the validation split by minimizing the negative
log-likelihood: it keeps every argmax (accuracy is unchanged) and, for binary tasks, every
ranking (AUC too).

A temperature fitted on a small or easy validation split can make the test worse: on three
chest X-ray and brain MRI sets the fitted T (0.58-0.86) sharpened already-overconfident
predictions and raised test ECE every time. ``cross_fitted_temperature`` therefore fits T on
part of the validation images and scores it on the rest, and keeps it only when that held-out
score improves beyond its own noise; otherwise T stays 1 and the report says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))
CROSS_FIT_FOLDS = 5


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


@dataclass(frozen=True)
class TemperatureFit:
    """The temperature evaluate applies and the evidence for it (saved in the decision
    record's ``fitted_on``, shown in the report)."""

    temperature: float  # the one applied: ``fitted`` when kept, else 1
    fitted: float  # T fitted on every validation image
    kept: bool
    # None when there were too few images to cross-fit:
    nll_at_1: float | None  # mean held-out NLL at T = 1 over the cross-fitting folds
    nll_cross_fitted: float | None  # mean held-out NLL at each fold's own T
    improvement_low: float | None  # one-sided 95% lower bound of the mean improvement
    folds: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fold_of(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """Each image's cross-fitting fold: patients (or images) dealt round-robin per class in a
    seeded order, so every fold sees every class and no patient straddles two folds."""
    keys = np.asarray(groups if groups is not None else np.arange(len(y))).astype(str)
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=int)
    frame: dict[str, int] = {}
    for cls in np.unique(y):
        members = list(dict.fromkeys(keys[y == cls]))
        for i, k in enumerate(rng.permutation(np.array(members, dtype=object))):
            frame.setdefault(str(k), i % folds)
    for i, k in enumerate(keys):
        out[i] = frame[k]
    return out


def _per_image_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> np.ndarray:
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return -logp[np.arange(len(y)), np.asarray(y)]


def cross_fitted_temperature(
    logits: np.ndarray,
    y_true: np.ndarray,
    groups: np.ndarray | None = None,
    folds: int = CROSS_FIT_FOLDS,
    seed: int = 0,
) -> TemperatureFit:
    """T fitted on every validation image, kept only when fitting it on the other folds
    lowers each held-out fold's NLL: the paired per-image improvement's one-sided 95% lower
    bound (mean - 1.645 standard errors) must be above 0. Below ``2 * folds`` images there is
    nothing to cross-fit and T stays 1."""
    y = np.asarray(y_true)
    fitted = fit_temperature(logits, y)
    n = len(y)
    k = min(folds, len(np.unique(groups)) if groups is not None else n)
    if n < 2 * folds or k < 2:
        reason = f"too few validation images ({n}) to cross-fit a temperature; T = 1 kept"
        return TemperatureFit(1.0, fitted, False, None, None, None, 0, reason)
    fold = fold_of(y, groups, k, seed)
    base = _per_image_nll(logits, y, 1.0)
    crossed = np.empty(n)
    for f in range(k):
        held = fold == f
        t = fit_temperature(logits[~held], y[~held])
        crossed[held] = _per_image_nll(logits[held], y[held], t)
    gain = base - crossed
    low = float(gain.mean() - 1.645 * gain.std(ddof=1) / np.sqrt(n))
    kept = low > 0
    reason = (
        f"cross-fitted validation NLL {crossed.mean():.4f} < {base.mean():.4f} at T = 1"
        if kept
        else f"T = {fitted:.2f} did not lower the cross-fitted validation NLL "
        f"({crossed.mean():.4f} vs {base.mean():.4f} at T = 1, {k} folds); T = 1 kept"
    )
    return TemperatureFit(
        temperature=fitted if kept else 1.0,
        fitted=fitted,
        kept=kept,
        nll_at_1=float(base.mean()),
        nll_cross_fitted=float(crossed.mean()),
        improvement_low=low,
        folds=k,
        reason=reason,
    )
