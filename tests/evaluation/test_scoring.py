"""What evaluate says about the validation split it fitted on and about other class shares."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medclf.evaluation.scoring import class_shares, validation_gap


def _val(correct: int, n: int) -> SimpleNamespace:
    """Validation logits with ``correct`` of ``n`` argmax decisions right (2 classes)."""
    y = np.zeros(n, int)
    logits = np.zeros((n, 2))
    logits[:correct, 0] = 1.0
    logits[correct:, 1] = 1.0
    return SimpleNamespace(y=y, logits=logits)


def test_a_validation_split_easier_than_test_is_said() -> None:
    easy = validation_gap(_val(95, 100), {"value": 0.82, "ci_low": 0.79, "ci_high": 0.85}, "test")
    assert easy["easier"] and easy["val_accuracy"] == pytest.approx(0.95)
    assert "validation is easier than test" in easy["note"] and "optimistic" in easy["note"]
    alike = validation_gap(_val(84, 100), {"value": 0.82, "ci_low": 0.79, "ci_high": 0.85}, "test")
    assert not alike["easier"] and "note" not in alike


def test_predictive_values_at_each_splits_class_share() -> None:
    """Bayes' rule on sensitivity 0.9 and specificity 0.8 at shares 0.9, 0.5 and 0.375."""
    split = pd.DataFrame(
        {"split": ["train"] * 10 + ["val"] * 4, "label": ["p"] * 9 + ["n"] + ["p", "p", "n", "n"]}
    )
    test_labels = pd.Series(["p"] * 3 + ["n"] * 5)
    operating = {
        "positive_class": "p",
        "per_class": {"p": {"sensitivity": {"value": 0.9}, "specificity": {"value": 0.8}}},
    }
    out = class_shares(split, "test", test_labels, ("n", "p"), operating)
    rows = {r["split"]: r for r in out["rows"]}
    assert rows["train"]["share"] == pytest.approx(0.9)
    assert rows["train"]["ppv"] == pytest.approx(0.81 / (0.81 + 0.02))
    assert rows["val"]["ppv"] == pytest.approx(0.45 / (0.45 + 0.1))
    assert rows["test"]["npv"] == pytest.approx(0.5 / (0.5 + 0.0375))
    assert class_shares(split, "test", test_labels, ("a", "b", "c"), operating) is None
    # where argmax decides (no thresholds), the headline per-class rates are the decision's
    argmax = {"positive_class": "p", "thresholds": {}, "per_class": {}}
    assert class_shares(split, "test", test_labels, ("n", "p"), argmax) is None
    same = class_shares(split, "test", test_labels, ("n", "p"), argmax, operating["per_class"])
    assert same["rows"] == out["rows"]
