"""Calibration errors agree with their definitions; temperature scaling fixes overconfidence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from medclf.evaluation.calibration import (
    apply_temperature,
    brier_score,
    calibration_errors,
    cross_fitted_temperature,
    fit_temperature,
    nll,
    reliability_bins,
)


def _overconfident(n: int, seed: int, scale: float = 4.0):
    """A 3-class model whose logits are ``scale`` times the calibrated ones."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, 3)) * 1.2
    p = apply_temperature(true_logits, 1.0)
    y = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from the true probs
    return true_logits * scale, y


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    val_logits, val_y = _overconfident(1500, seed=0)
    test_logits, test_y = _overconfident(1500, seed=1)
    t = fit_temperature(val_logits, val_y)
    assert t == pytest.approx(4.0, rel=0.15)  # recovers the inflation factor
    before = calibration_errors(apply_temperature(test_logits, 1.0), test_y, 15)[0]
    after = calibration_errors(apply_temperature(test_logits, t), test_y, 15)[0]
    assert before > 0.15 and after < 0.05 and after < before / 3
    assert nll(test_logits, test_y, t) < nll(test_logits, test_y, 1.0)
    # accuracy is unchanged: temperature keeps every argmax
    assert (apply_temperature(test_logits, t).argmax(1) == test_logits.argmax(1)).all()


def test_underconfident_model_gets_t_below_one() -> None:
    logits, y = _overconfident(1500, seed=2, scale=0.4)
    assert fit_temperature(logits, y) == pytest.approx(0.4, rel=0.15)


def test_ece_is_the_count_weighted_gap_of_the_reliability_bins() -> None:
    logits, y = _overconfident(400, seed=3)
    probs = apply_temperature(logits, 1.0) * 0.999  # keep confidences below 1.0
    probs /= probs.sum(1, keepdims=True)
    ece, mce = calibration_errors(probs, y, 10)
    rel = reliability_bins(probs, y, 10)
    count = np.array(rel["count"])
    gap = np.abs(np.nan_to_num(np.array(rel["accuracy"])) - np.nan_to_num(rel["confidence"]))
    assert ece == pytest.approx((gap * count).sum() / count.sum(), abs=1e-6)
    assert mce == pytest.approx(gap[count > 0].max(), abs=1e-6)


@pytest.mark.parametrize("k", [2, 4])
def test_brier_matches_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    probs = rng.dirichlet(np.ones(k), size=80)
    y = rng.integers(0, k, 80)
    expected = (
        brier_score_loss(y, probs[:, 1]) if k == 2 else brier_score_loss(y, probs, labels=range(k))
    )
    assert brier_score(probs, y) == pytest.approx(expected)


def test_cross_fitting_keeps_a_temperature_that_generalizes() -> None:
    """A clearly overconfident model on 300 validation images: T is kept."""
    logits, y = _overconfident(300, seed=4, scale=3.0)
    fit = cross_fitted_temperature(logits, y)
    assert fit.kept and fit.temperature == fit.fitted == pytest.approx(3.0, rel=0.3)
    assert fit.nll_cross_fitted < fit.nll_at_1 and fit.improvement_low > 0


def test_cross_fitting_refuses_a_temperature_fitted_on_noise() -> None:
    """A calibrated model on 40 validation images: the fitted T differs from 1 by chance
    and does not lower the held-out NLL, so T = 1 is applied and the reason is given."""
    logits, y = _overconfident(40, seed=5, scale=1.0)
    fit = cross_fitted_temperature(logits, y)
    assert fit.fitted != pytest.approx(1.0, abs=0.02)
    assert not fit.kept and fit.temperature == 1.0
    assert "T = 1 kept" in fit.reason


def test_cross_fitting_keeps_patients_in_one_fold() -> None:
    """Slices of one patient are held out together: a patient whose 10 slices are all wrong
    cannot be both fitted and scored."""
    logits, y = _overconfident(60, seed=6, scale=1.0)
    groups = np.repeat(np.arange(6), 10)
    fit = cross_fitted_temperature(logits, y, groups)
    assert fit.folds == 5
    from medclf.evaluation.calibration import fold_of

    fold = fold_of(y, groups, 5, 0)
    for g in range(6):
        assert len(set(fold[groups == g])) == 1


def test_too_few_images_keep_t_at_one() -> None:
    logits, y = _overconfident(6, seed=7, scale=4.0)
    fit = cross_fitted_temperature(logits, y)
    assert fit.temperature == 1.0 and not fit.kept and fit.folds == 0
