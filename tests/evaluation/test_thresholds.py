"""Operating thresholds follow their rule on the data they are chosen on."""

from __future__ import annotations

import numpy as np
import pytest

from medclf.errors import MedclfError
from medclf.evaluation.thresholds import choose_threshold, parse_rule


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400).astype(bool)
    score = 1 / (1 + np.exp(-(rng.normal(size=400) + 1.5 * y - 0.7)))
    return y, score


def _rates(y, score, t):
    pred = score >= t
    return (pred & y).sum() / y.sum(), (~pred & ~y).sum() / (~y).sum()


def test_youden_maximizes_sensitivity_plus_specificity() -> None:
    y, score = _data()
    point = choose_threshold(y, score, parse_rule("youden"))
    sens, spec = _rates(y, score, point.threshold)
    assert (sens, spec) == pytest.approx((point.sensitivity, point.specificity))
    best = max(sum(_rates(y, score, t)) for t in np.unique(score))
    assert sens + spec == pytest.approx(best)


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_sensitivity_rule_keeps_the_target_with_the_best_specificity(target: float) -> None:
    y, score = _data(1)
    point = choose_threshold(y, score, parse_rule(f"sensitivity>={target}"))
    sens, spec = _rates(y, score, point.threshold)
    assert sens >= target
    others = [_rates(y, score, t) for t in np.unique(score)]
    assert spec == pytest.approx(max(sp for se, sp in others if se >= target))


def test_specificity_rule_keeps_the_target_with_the_best_sensitivity() -> None:
    y, score = _data(2)
    point = choose_threshold(y, score, parse_rule("specificity >= 0.9"))
    sens, spec = _rates(y, score, point.threshold)
    assert spec >= 0.9
    others = [_rates(y, score, t) for t in np.unique(score)]
    assert sens == pytest.approx(max(se for se, sp in others if sp >= 0.9))


def test_the_threshold_sits_in_the_middle_of_the_gap_not_on_a_validation_score() -> None:
    """Separable validation scores: every threshold between 0.2 and 0.8 gives sensitivity
    and specificity 1; the edge (0.8, the hardest positive's own score) would miss any test
    positive a little harder, the middle (0.5 on the logit scale) does not."""
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    score = np.array([0.05, 0.1, 0.2, 0.8, 0.9, 0.95])
    for rule in ("youden", "sensitivity>=0.9", "specificity>=0.9"):
        point = choose_threshold(y, score, parse_rule(rule))
        assert point.threshold == pytest.approx(0.5)
        assert (point.sensitivity, point.specificity) == (1.0, 1.0)


def test_rules_parse_with_synonyms_and_reject_nonsense() -> None:
    assert str(parse_rule("recall>=0.9")) == "sensitivity>=0.9"
    assert str(parse_rule("TNR>=0.8")) == "specificity>=0.8"
    for bad in ("sensitivity>=1.5", "accuracy>=0.9", "max"):
        with pytest.raises(MedclfError, match="youden, sensitivity>=X or specificity>=X"):
            parse_rule(bad)
    with pytest.raises(MedclfError, match="with and without"):
        choose_threshold(np.ones(5, bool), np.linspace(0, 1, 5), parse_rule("youden"))


def test_binary_positive_class_is_the_finding() -> None:
    from medclf.evaluation.decision_fit import positive_class as _positive_class

    assert _positive_class(("malignant", "normal"), None) == 0
    assert _positive_class(("contrast", "no_contrast"), None) == 0
    assert _positive_class(("cavity", "nodule"), None) == 1  # 'nodule' is not a "no ..." name
    assert _positive_class(("contrast", "plain"), "contrast") == 0
    assert _positive_class(("a", "b", "c"), None) is None
    with pytest.raises(MedclfError, match=r"eval\.positive_class=x: not one of"):
        _positive_class(("a", "b"), "x")
