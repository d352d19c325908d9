"""Clinical classification metrics, named once, computed fast enough to bootstrap.

Metric names and their aliases are ``medclf.metric_names.METRICS`` (re-exported here): every
report, gate and ``compare`` metric resolves names through it, so ``recall``, ``TPR`` and
``sensitivity`` are the same number.

Why not call scikit-learn per metric: a 95% interval takes 1000 bootstrap resamples (plus a
jackknife for BCa) of every metric, and sklearn's per-call input validation costs more than
the metric itself: 45 intervals on 315 images take 10-42x longer that way, depending on the
machine (``benchmarks/bootstrap_metrics.py``; docs/benchmarks.md lists the machines). Every
value is derived from one confusion matrix (``np.bincount``) or one ranking of the scores,
with sklearn's exact conventions (``zero_division=0``, averaged tie ranks, step-wise average
precision, mergesort top-k); ``tests/evaluation/test_metrics.py`` checks each against sklearn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from medclf.evaluation.calibration import brier_score, calibration_errors
from medclf.metric_names import METRICS, OPERATING_KEYS, PER_CLASS_KEYS


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows true, columns predicted (sklearn's layout)."""
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def ovr_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn


def per_class_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    return {
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def overall_from_confusion(cm: np.ndarray) -> dict[str, float]:
    n = cm.sum()
    tp, fp, fn, tn = ovr_counts(cm)
    pc = per_class_from_counts(tp, fp, fn, tn)
    support = tp + fn
    predicted = tp + fp
    weights = _div(support, np.full_like(support, n))
    present = support > 0
    trace = float(tp.sum())
    # kappa and MCC as sklearn defines them for the multiclass case
    expected = float((support * predicted).sum())
    kappa_den = n * n - expected
    kappa = (n * trace - expected) / kappa_den if kappa_den else 0.0
    cov_tp = n * trace - float((support * predicted).sum())
    cov_tt = n * n - float((support * support).sum())
    cov_pp = n * n - float((predicted * predicted).sum())
    mcc = cov_tp / np.sqrt(cov_tt * cov_pp) if cov_tt * cov_pp > 0 else 0.0
    return {
        "accuracy": trace / n if n else 0.0,
        "balanced_accuracy": float(pc["sensitivity"][present].mean()) if present.any() else 0.0,
        "macro_precision": float(pc["ppv"].mean()),
        "macro_recall": float(pc["sensitivity"].mean()),
        "macro_f1": float(pc["f1"].mean()),
        "weighted_precision": float((pc["ppv"] * weights).sum()),
        "weighted_recall": float((pc["sensitivity"] * weights).sum()),
        "weighted_f1": float((pc["f1"] * weights).sum()),
        "cohen_kappa": float(kappa),
        "mcc": float(mcc),
    }


ORDINAL_KEYS = ("quadratic_kappa", "mean_absolute_error")


def ordinal_from_confusion(cm: np.ndarray, grades: Sequence[float]) -> dict[str, float]:
    """Quadratic weighted kappa as sklearn's ``cohen_kappa_score(weights="quadratic")``
    computes it over the grades in order (weights from the grades' ranks, 0..K-1), and the
    mean absolute error in grade units."""
    g = np.asarray(grades, float)
    rank = np.argsort(np.argsort(g)).astype(float)
    n = cm.sum()
    w = (rank[:, None] - rank[None, :]) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n if n else np.zeros_like(w)
    den = float((w * expected).sum())
    qwk = 1.0 - float((w * cm).sum()) / den if den else 0.0
    mae = float((np.abs(g[:, None] - g[None, :]) * cm).sum() / n) if n else 0.0
    return {"quadratic_kappa": qwk, "mean_absolute_error": mae}


def roc_auc_ovr(is_pos: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U / (P * N) with averaged tie ranks: exactly sklearn's trapezoidal AUC."""
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(is_pos: np.ndarray, score: np.ndarray) -> float:
    """Sum over distinct thresholds of (R_k - R_{k-1}) * P_k (sklearn's definition)."""
    n_pos = int(is_pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")[::-1]
    s, y = score[order], is_pos[order].astype(float)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    ranked = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float((ranked == np.asarray(y_true)[:, None]).any(axis=1).mean())


def threshold_predictions(probs: np.ndarray, positive: int, threshold: float) -> np.ndarray:
    """Binary decisions at a threshold on the positive class's probability."""
    negative = 1 - positive
    return np.where(probs[:, positive] >= threshold, positive, negative)


@dataclass(frozen=True)
class MetricKey:
    """Where one computed value belongs: its section, metric and class (None: the task)."""

    section: str  # "overall" | "per_class" | "operating" (at the stored thresholds)
    metric: str
    cls: str | None = None

    @property
    def flat(self) -> str:
        """The name gates, figures and tables use: ``sensitivity[normal]``,
        ``operating_sensitivity[normal]``, ``accuracy``."""
        name = f"operating_{self.metric}" if self.section == "operating" else self.metric
        return name if self.cls is None else f"{name}[{self.cls}]"


@dataclass(frozen=True)
class MetricSuite:
    """What to compute for one task: the classes, the binary positive class (or None),
    the per-class operating thresholds, and the calibration bins."""

    class_names: tuple[str, ...]
    positive: int | None = None
    thresholds: dict[int, float] | None = None
    calibration_bins: int = 15
    grades: tuple[float, ...] | None = None  # ordered tasks: each class's grade

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def overall_keys(self) -> list[str]:
        return [m.name for m in METRICS if m.scope == "overall" and self._has(m.name)]

    def layout(self) -> list[MetricKey]:
        """What each value ``compute`` returns is, in order: an array, because the bootstrap
        resamples arrays; ``named`` turns values back into sections by this layout."""
        keys = [MetricKey("overall", k) for k in self.overall_keys()]
        for c in self.class_names:
            keys += [MetricKey("per_class", k, c) for k in PER_CLASS_KEYS]
        for c in self._operating_classes():
            keys += [MetricKey("operating", k, c) for k in OPERATING_KEYS]
        if self._binary_operating():
            keys += [
                MetricKey("operating", "accuracy"),
                MetricKey("operating", "balanced_accuracy"),
            ]
        return keys

    def keys(self) -> list[str]:
        """Flat names of every value ``compute`` returns, in order (``MetricKey.flat``)."""
        return [k.flat for k in self.layout()]

    def named(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values by flat name -> ``{"overall": {metric: v}, "per_class": {class: {metric:
        v}}, "operating_point": {metric: v, "per_class": {class: {metric: v}}}}``; names
        outside the layout (latency, support) are left to the caller."""
        out: dict[str, Any] = {
            "overall": {},
            "per_class": {c: {} for c in self.class_names},
            "operating_point": {"per_class": {}},
        }
        for key in self.layout():
            if key.flat not in values:
                continue
            if key.section == "overall":
                section = out["overall"]
            elif key.section == "per_class":
                section = out["per_class"][key.cls]
            elif key.cls is None:
                section = out["operating_point"]
            else:
                section = out["operating_point"]["per_class"].setdefault(key.cls, {})
            section[key.metric] = values[key.flat]
        return out

    def _has(self, name: str) -> bool:
        if name in ORDINAL_KEYS:
            return self.grades is not None
        if name.startswith("top") and name.endswith("_accuracy"):
            return int(name[3]) < self.n_classes
        return True

    def _operating_classes(self) -> list[str]:
        return [self.class_names[i] for i in sorted(self.thresholds or {})]

    def _binary_operating(self) -> bool:
        return self.positive is not None and bool(self.thresholds) and self.n_classes == 2

    def compute(self, y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Every metric for labels ``y_true`` and probabilities ``probs`` (rows sum to 1)."""
        y_true = np.asarray(y_true, np.int64)
        n_classes = self.n_classes
        y_pred = probs.argmax(axis=1)
        cm = confusion(y_true, y_pred, n_classes)
        values = overall_from_confusion(cm)
        if self.grades is not None:
            values.update(ordinal_from_confusion(cm, self.grades))
        onehot = y_true[:, None] == np.arange(n_classes)[None, :]
        aucs = np.array([roc_auc_ovr(onehot[:, i], probs[:, i]) for i in range(n_classes)])
        aps = np.array([average_precision(onehot[:, i], probs[:, i]) for i in range(n_classes)])
        if self.positive is not None and n_classes == 2:
            values["macro_auc"] = float(aucs[self.positive])
            values["macro_pr_auc"] = float(aps[self.positive])
        else:
            values["macro_auc"] = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan
            values["macro_pr_auc"] = float(np.nanmean(aps)) if np.isfinite(aps).any() else np.nan
        for k in (2, 3):
            if k < n_classes:
                values[f"top{k}_accuracy"] = top_k_accuracy(y_true, probs, k)
        values["ece"], values["mce"] = calibration_errors(probs, y_true, self.calibration_bins)
        values["brier"] = brier_score(probs, y_true)
        out = [values[k] for k in self.overall_keys()]
        tp, fp, fn, tn = ovr_counts(cm)
        pc = per_class_from_counts(tp, fp, fn, tn)
        for i in range(n_classes):
            out += [pc[k][i] for k in PER_CLASS_KEYS[:5]] + [aucs[i], aps[i]]
        for i in sorted(self.thresholds or {}):
            decided = probs[:, i] >= self.thresholds[i]
            truth = onehot[:, i]
            op = per_class_from_counts(
                np.array([(decided & truth).sum()]),
                np.array([(decided & ~truth).sum()]),
                np.array([(~decided & truth).sum()]),
                np.array([(~decided & ~truth).sum()]),
            )
            out += [op[k][0] for k in OPERATING_KEYS]
        if self._binary_operating():
            pred = threshold_predictions(probs, self.positive, self.thresholds[self.positive])
            op_all = overall_from_confusion(confusion(y_true, pred, n_classes))
            out += [op_all["accuracy"], op_all["balanced_accuracy"]]
        return np.asarray(out, dtype=float)

    def supports(self, y_true: Sequence[int]) -> dict[str, int]:
        counts = np.bincount(np.asarray(y_true, np.int64), minlength=self.n_classes)
        return {c: int(counts[i]) for i, c in enumerate(self.class_names)}
