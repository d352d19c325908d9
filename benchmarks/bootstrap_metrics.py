"""Bootstrap intervals for the whole metric suite: medclf's confusion-matrix/rank metrics vs
calling scikit-learn once per metric per resample (the straightforward implementation).

Same data (the size and class count of the chest_ct test split: 315 images, 4 classes, as
synthetic scores), same scipy.stats.bootstrap call (BCa, 1000 resamples), same metrics; only
the statistic differs. Both are measured in this run, side by side, ``--repeats`` times each
(alternating); min and median of each side and their ratios are printed.

    .venv/bin/python benchmarks/bootstrap_metrics.py [--resamples 1000] [--images 315] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from medclf.evaluation.bootstrap import bootstrap_intervals, resampling_units
from medclf.evaluation.calibration import calibration_errors
from medclf.evaluation.metrics import MetricSuite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import alternate, ratio_text


def sklearn_statistic(y: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """The same values, one sklearn call per metric (per-class ones once per class)."""
    labels = list(range(k))
    pred = probs.argmax(1)
    kw = {"labels": labels, "zero_division": 0}
    out = [
        skm.accuracy_score(y, pred),
        skm.balanced_accuracy_score(y, pred),
        *(
            f(y, pred, average=a, **kw)
            for a in ("macro", "weighted")
            for f in (skm.precision_score, skm.recall_score, skm.f1_score)
        ),
        skm.cohen_kappa_score(y, pred),
        skm.matthews_corrcoef(y, pred),
        skm.roc_auc_score(y, probs, multi_class="ovr", labels=labels),
        skm.average_precision_score(np.eye(k)[y], probs, average="macro"),
        skm.top_k_accuracy_score(y, probs, k=2, labels=labels),
        skm.top_k_accuracy_score(y, probs, k=3, labels=labels),
        *calibration_errors(probs, y, 15),
        skm.brier_score_loss(y, probs, labels=labels),
    ]
    cm = skm.confusion_matrix(y, pred, labels=labels)
    for i in labels:
        truth = y == i
        tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        out += [
            skm.recall_score(truth, pred == i, zero_division=0),
            tn / max(1, cm.sum() - cm[i].sum()),
            skm.precision_score(truth, pred == i, zero_division=0),
            tn / max(1, cm.sum() - cm[:, i].sum()),
            skm.f1_score(truth, pred == i, zero_division=0),
            skm.roc_auc_score(truth, probs[:, i]) if 0 < truth.sum() < len(y) else np.nan,
            skm.average_precision_score(truth, probs[:, i]) if truth.any() else np.nan,
        ]
    return np.asarray(out, float)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--images", type=int, default=315)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    k = 4
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, args.images)
    logits = rng.normal(size=(args.images, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    suite = MetricSuite(tuple(f"c{i}" for i in range(k)))
    units = resampling_units(None, len(y))
    stats = {
        "medclf": lambda r: suite.compute(y[r], probs[r]),
        "sklearn per metric": lambda r: sklearn_statistic(y[r], probs[r], k),
    }
    counts: dict[str, int] = {}

    def side(name: str):
        def run() -> None:
            counts[name] = len(bootstrap_intervals(stats[name], units, n_resamples=args.resamples))

        return run

    timings = alternate({name: side(name) for name in stats}, args.repeats)
    for name, timing in timings.items():
        print(
            f"{name:<20} {timing.text()} for {counts[name]} intervals "
            f"({args.resamples} BCa resamples + {len(units)} jackknife, {args.images} images)"
        )
    print(f"speed-up: {ratio_text(timings['sklearn per metric'], timings['medclf'])}")


if __name__ == "__main__":
    main()
