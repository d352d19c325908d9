"""The decision record: thresholds decide labels the documented way and survive a round trip."""

from __future__ import annotations

import numpy as np
import pytest

from medclf.decision import DecisionRecord
from medclf.errors import MedclfError


def test_binary_threshold_decides_between_positive_and_negative(tmp_path) -> None:
    rec = DecisionRecord(
        temperature=1.7, rule="youden", thresholds={"tumor": 0.3}, positive_class="tumor"
    )
    classes = ("normal", "tumor")
    assert rec.decide(np.array([0.65, 0.35]), classes)["label"] == "tumor"  # below argmax
    assert rec.decide(np.array([0.75, 0.25]), classes)["label"] == "normal"
    rec.save(tmp_path / "calibration.json")
    assert DecisionRecord.load_file(tmp_path / "calibration.json") == rec


def test_multiclass_labels_the_most_probable_flagged_class_or_none() -> None:
    rec = DecisionRecord(rule="youden", thresholds={"a": 0.5, "b": 0.2, "c": 0.6})
    classes = ("a", "b", "c")
    d = rec.decide(np.array([0.45, 0.30, 0.25]), classes)
    assert d["label"] == "b" and d["flagged"] == ["b"]
    d = rec.decide(np.array([0.55, 0.25, 0.20]), classes)
    assert d["label"] == "a" and d["flagged"] == ["a", "b"]
    assert rec.decide(np.array([0.45, 0.15, 0.40]), classes)["label"] is None


def test_without_thresholds_the_decision_is_the_argmax() -> None:
    d = DecisionRecord().decide(np.array([0.2, 0.8]), ("x", "y"))
    assert d == {"label": "y", "flagged": ["y"], "rule": "argmax"}


def test_bad_records_are_refused() -> None:
    with pytest.raises(MedclfError, match="temperature must be > 0"):
        DecisionRecord(temperature=0.0)
    with pytest.raises(MedclfError, match="re-run 'medclf evaluate'"):
        DecisionRecord(thresholds={"zzz": 0.5}).check_classes(("a", "b"), "calibration.json")
