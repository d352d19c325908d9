"""Which rule decides a prediction (``eval.decision``): a youden rule's thresholds only where
they beat argmax on cross-fitted validation; a target rule always; argmax otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medclf.evaluation.decision_fit import choose_rule, fit_decision
from medclf.evaluation.thresholds import parse_rule

BINARY = ("disease", "normal")
FOUR = ("a", "b", "c", "d")


def _binary_probs(n: int, positive_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """P(disease) of a model whose positives score ``positive_shift`` logits above negatives,
    both centred below 0: argmax (0.5) misses most positives, a lower threshold does not."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)  # 0 = disease
    logit = np.where(y == 0, -2.5 + positive_shift, -2.5) + rng.normal(0, 0.5, len(y))
    p = 1 / (1 + np.exp(-logit))
    return np.stack([p, 1 - p], axis=1), y


def _calibrated_four(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated four-class model: labels drawn from its own probabilities, where argmax is
    the Bayes decision and per-class youden thresholds can only add noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.2, (n, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    return p, y


def test_thresholds_decide_where_they_beat_argmax_out_of_sample():
    probs, y = _binary_probs(200, 2.0, 0)
    fit = choose_rule(probs, y, BINARY, 0, parse_rule("youden"), "auto")
    assert fit["thresholds_decide"], fit["reason"]
    assert fit["balanced_accuracy_thresholds"] > fit["balanced_accuracy_argmax"] + 0.2
    assert fit["gain_low"] > 0 and fit["folds"] == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_argmax_decides_where_thresholds_do_not_beat_it(seed: int):
    probs, y = _calibrated_four(300, seed)
    fit = choose_rule(probs, y, FOUR, None, parse_rule("youden"), "auto")
    assert not fit["thresholds_decide"], fit["reason"]
    assert "argmax decides" in fit["reason"] and fit["gain_low"] <= 0


def test_patients_stay_in_one_cross_fitting_fold():
    probs, y = _binary_probs(200, 2.0, 3)
    groups = np.repeat(np.arange(50), 4)  # four images of each patient, one class each
    fit = choose_rule(probs, y, BINARY, 0, parse_rule("youden"), "auto", groups)
    assert fit["folds"] == 5 and fit["thresholds_decide"]
    few = choose_rule(probs, y, BINARY, 0, parse_rule("youden"), "auto", groups % 1)
    assert not few["thresholds_decide"] and "too few" in few["reason"]


@pytest.mark.parametrize(
    ("rule", "mode", "decide"),
    [
        ("sensitivity>=0.9", "auto", True),  # a clinical constraint decides, whatever it costs
        ("youden", "thresholds", True),
        ("youden", "argmax", False),
        ("specificity>=0.95", "argmax", False),
    ],
)
def test_a_target_rule_or_an_explicit_choice_is_not_second_guessed(rule, mode, decide):
    probs, y = _calibrated_four(300, 0)
    fit = choose_rule(probs, y, FOUR, None, parse_rule(rule), mode)
    assert fit["thresholds_decide"] is decide


def test_the_record_says_argmax_and_why_when_thresholds_lose():
    probs, y = _calibrated_four(300, 1)
    val = SimpleNamespace(logits=np.log(probs), y=y, table=pd.DataFrame({"label": y}))
    cfg = SimpleNamespace(
        threshold="youden",
        positive_class=None,
        temperature_scaling=False,
        conformal_alpha=None,
        decision="auto",
        tta="none",
        get=lambda key: None,
    )
    record = fit_decision(val, FOUR, cfg, "v1")
    assert record.thresholds == {} and record.rule == "argmax"
    assert record.fitted_on["decision_fit"]["rule"] == "youden"
    assert "argmax decides" in record.fitted_on["decision_fit"]["reason"]
    label = record.decide(probs[0], FOUR)["label"]
    assert label == FOUR[int(np.argmax(probs[0]))]
    cfg.decision = "thresholds"
    assert set(fit_decision(val, FOUR, cfg, "v1").thresholds) == set(FOUR)
