"""Bootstrap intervals: nominal 95% intervals cover the true value in repeated draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from medclf.evaluation.bootstrap import bootstrap_intervals, resampling_units
from medclf.evaluation.metrics import (
    MetricSuite,
    confusion,
    overall_from_confusion,
    roc_auc_ovr,
)

SUITE = MetricSuite(("neg", "pos"), positive=1)
KEYS = SUITE.keys()
WATCHED = ("accuracy", "macro_auc", "sensitivity[pos]")
# Scores: negatives N(0, 1), positives N(1, 1), prevalence 1/2, predicted positive at s >= 0.5.
TRUE = {
    "accuracy": norm.cdf(0.5),
    "macro_auc": norm.cdf(1 / np.sqrt(2)),
    "sensitivity[pos]": norm.cdf(0.5),
}


def _watched(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The three watched metrics with the suite's own functions (the full suite is tested
    against sklearn elsewhere; here speed lets the simulation repeat 100 times)."""
    cm = confusion(y, probs.argmax(1), 2)
    accuracy = overall_from_confusion(cm)["accuracy"]
    sensitivity = cm[1, 1] / cm[1].sum() if cm[1].sum() else np.nan
    return np.array([accuracy, roc_auc_ovr(y == 1, probs[:, 1]), sensitivity])


def _probs(score: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(score - 0.5) * 3))
    return np.stack([1 - p, p], axis=1)


def _coverage(draw, n_sims: int, grouped: bool, method: str = "bca") -> dict[str, float]:
    hits = {k: 0 for k in WATCHED}
    for sim in range(n_sims):
        y, score, patients = draw(np.random.default_rng(1000 + sim))
        probs = _probs(score)
        units = resampling_units(patients if grouped else None, len(y))
        intervals = bootstrap_intervals(
            lambda rows, y=y, probs=probs: _watched(y[rows], probs[rows]),
            units,
            n_resamples=400,
            method=method,
            seed=sim,
        )
        for key, ci in zip(WATCHED, intervals, strict=True):
            hits[key] += ci.low <= TRUE[key] <= ci.high
    return {k: v / n_sims for k, v in hits.items()}


def _independent(rng: np.random.Generator):
    y = rng.integers(0, 2, 150)
    return y, rng.normal(size=150) + y, None


def _clustered(rng: np.random.Generator):
    """40 patients x 5 images; images of a patient share label and most of their noise, so
    the effective sample size is close to the patient count, not the image count."""
    y = np.repeat(rng.integers(0, 2, 40), 5)
    shared = np.repeat(rng.normal(size=40), 5)
    score = y + np.sqrt(0.9) * shared + np.sqrt(0.1) * rng.normal(size=200)
    return y, score, np.repeat([f"p{i}" for i in range(40)], 5)


@pytest.mark.slow
# BCa is the default; the percentile method's coverage (20 s) runs with make test-heavy
@pytest.mark.parametrize("method", ["bca", pytest.param("percentile", marks=pytest.mark.heavy)])
def test_95_percent_intervals_cover_the_truth(method: str) -> None:
    coverage = _coverage(_independent, n_sims=100, grouped=False, method=method)
    assert all(c >= 0.90 for c in coverage.values()), coverage


@pytest.mark.heavy  # about a minute on 2 cores; CI runs it with make test-heavy
def test_patient_resampling_keeps_coverage_that_image_resampling_loses() -> None:
    by_patient = _coverage(_clustered, n_sims=100, grouped=True)
    by_image = _coverage(_clustered, n_sims=100, grouped=False)
    assert all(c >= 0.90 for c in by_patient.values()), by_patient
    # resampling correlated images as if independent gives intervals that are far too narrow
    assert by_image["accuracy"] < 0.85, by_image


def test_units_group_rows_by_patient_and_keep_rows_without_id_alone() -> None:
    units = resampling_units(["a", "b", "a", "", "b", "nan"], 6)
    assert sorted(map(list, units)) == [[0, 2], [1, 4], [3], [5]]
    assert len(resampling_units(None, 4)) == 4


def test_undefined_resamples_fall_back_to_the_defined_ones() -> None:
    y = np.array([0] * 40 + [1] * 2)  # most resamples of 2 positives in 42 keep one; some none
    probs = _probs(np.r_[np.zeros(40), np.ones(2)] + np.linspace(0, 0.1, 42))
    idx = KEYS.index("macro_auc")
    (ci,) = bootstrap_intervals(
        lambda rows: SUITE.compute(y[rows], probs[rows])[[idx]],
        resampling_units(None, 42),
        n_resamples=300,
    )
    assert 0 < ci.resamples < 300  # resamples without a positive were left out
    assert ci.method == "percentile" and ci.low <= ci.high <= 1.0


def test_same_seed_same_interval() -> None:
    rng = np.random.default_rng(0)
    y, score, _ = _independent(rng)
    probs = _probs(score)

    def run(seed: int):
        return bootstrap_intervals(
            lambda rows: SUITE.compute(y[rows], probs[rows])[:1],
            resampling_units(None, len(y)),
            n_resamples=200,
            seed=seed,
        )[0]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_watched_metrics_are_the_suites() -> None:
    y, score, _ = _independent(np.random.default_rng(3))
    probs = _probs(score)
    full = dict(zip(KEYS, SUITE.compute(y, probs), strict=True))
    assert _watched(y, probs) == pytest.approx([full[k] for k in WATCHED])


def test_a_near_degenerate_ppv_falls_back_to_percentile() -> None:
    """22 of 23 positive predictions correct: a third of the resamples give PPV 1.0, and BCa's
    tie-driven bias correction stretched the demo's interval down to 0.567. The percentile
    interval is used instead, and says so."""
    correct = np.r_[np.ones(22), np.zeros(1)]
    units = resampling_units(None, len(correct))

    def ppv(rows: np.ndarray) -> np.ndarray:
        return np.array([correct[rows].mean()])

    (ci,) = bootstrap_intervals(ppv, units, n_resamples=2000, method="bca", seed=0)
    assert ci.method == "percentile (BCa: tied resamples)"
    assert 0.8 < ci.low < 0.957 and ci.high == 1.0
    # a spread-out statistic keeps BCa
    spread = np.random.default_rng(0).normal(size=200)
    (mean_ci,) = bootstrap_intervals(
        lambda rows: np.array([spread[rows].mean()]), resampling_units(None, 200), 500
    )
    assert mean_ci.method == "BCa"
