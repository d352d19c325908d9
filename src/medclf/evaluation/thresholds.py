"""Operating points: a decision threshold per class, chosen on validation by a stated rule.

Rules (``eval.threshold``): ``youden`` (max sensitivity + specificity - 1), ``sensitivity>=X``
(the highest threshold that keeps sensitivity at least X, which maximizes specificity), and
``specificity>=X`` (the lowest threshold that keeps specificity at least X, which maximizes
sensitivity). Candidates are scikit-learn's ``roc_curve`` thresholds on the calibrated
probability of the class, one-vs-rest.

A chosen operating point holds for every threshold between the validation score it was read at
and the next lower one; the threshold returned is the middle of that gap (on the logit scale),
not its edge. The edge is a validation image's own score: on an easy validation split, where
the classes barely touch, it sits right at the hardest positive, and every test positive a
little harder than that is missed (a minority class found half the time on two chest X-ray
sets whose validation split was easier than their test split). The middle gives the same
validation sensitivity and specificity with a margin on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from medclf.errors import MedclfError

_RULE = re.compile(r"^\s*(sensitivity|specificity|recall|tpr|tnr)\s*>=\s*([0-9.]+)\s*$", re.I)
_SYNONYM = {"recall": "sensitivity", "tpr": "sensitivity", "tnr": "specificity"}


@dataclass(frozen=True)
class ThresholdRule:
    kind: str  # youden | sensitivity | specificity
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}>={self.target:g}"


def parse_rule(text: str) -> ThresholdRule:
    text = str(text).strip()
    if text.lower() == "youden":
        return ThresholdRule("youden")
    match = _RULE.match(text)
    if match:
        kind = _SYNONYM.get(match.group(1).lower(), match.group(1).lower())
        target = float(match.group(2))
        if 0.0 < target <= 1.0:
            return ThresholdRule(kind, target)
    raise MedclfError(
        f"eval.threshold={text!r}: use youden, sensitivity>=X or specificity>=X "
        "with X in (0, 1], e.g. eval.threshold='sensitivity>=0.95'"
    )


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    sensitivity: float  # on the data it was chosen on
    specificity: float


def choose_threshold(is_positive: np.ndarray, score: np.ndarray, rule: ThresholdRule):
    """The operating point for one class; needs both positives and negatives."""
    is_positive = np.asarray(is_positive, bool)
    if is_positive.all() or not is_positive.any():
        raise MedclfError(
            "cannot choose a threshold: the validation split needs images with and without "
            "the class; add validation images or lower data.split_ratios for test"
        )
    fpr, tpr, thr = roc_curve(is_positive, score, drop_intermediate=False)
    # roc_curve's first threshold is +inf ("nothing positive"); above any probability will do
    thr = np.minimum(thr, 1.0 + 1e-9)
    spec = 1.0 - fpr
    if rule.kind == "youden":
        i = int(np.argmax(tpr - fpr))
    elif rule.kind == "sensitivity":
        ok = np.flatnonzero(tpr >= rule.target - 1e-12)
        i = int(ok[0])  # thresholds decrease along the curve: first = highest = most specific
    else:
        # the +inf threshold has specificity 1, so some threshold always qualifies
        i = int(np.flatnonzero(spec >= rule.target - 1e-12)[-1])
    return OperatingPoint(_middle_of_gap(thr, i), float(tpr[i]), float(spec[i]))


def _middle_of_gap(thr: np.ndarray, i: int) -> float:
    """The logit-scale middle of (thr[i + 1], thr[i]]: every threshold there gives the point
    read at ``thr[i]``. The edges stay: nothing positive (i = 0), everything positive (last)."""
    if i == 0 or i + 1 >= len(thr):
        return float(thr[i])
    high, low = np.clip([thr[i], thr[i + 1]], 1e-12, 1 - 1e-12)
    logit = (np.log(high / (1 - high)) + np.log(low / (1 - low))) / 2
    middle = float(1 / (1 + np.exp(-logit)))
    return middle if low < middle <= high else float(thr[i])
