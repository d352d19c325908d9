"""Gates pass and fail when they should, on the point value or the interval bound."""

from __future__ import annotations

import pytest

from medclf.errors import MedclfError
from medclf.evaluation.gates import judge_gates

CLASSES = ("a", "b")
VALUES = {
    "accuracy": {"value": 0.90, "ci_low": 0.82, "ci_high": 0.95},
    "sensitivity[a]": {"value": 0.95, "ci_low": 0.90, "ci_high": 0.99},
    "sensitivity[b]": {"value": 0.70, "ci_low": 0.55, "ci_high": 0.80},
    "operating_sensitivity[b]": {"value": 0.91, "ci_low": 0.85, "ci_high": 0.96},
    "latency_p95_ms": {"value": 120.0},
    "ece": {"value": 0.04, "ci_low": 0.02, "ci_high": 0.09},
}


def test_shipped_style_gates_judged_on_points() -> None:
    gates = {
        "accuracy": {"min": 0.85},
        "recall": {"min": 0.8, "classes": "all"},
        "latency_p95_ms": {"max": 500},
    }
    result = judge_gates(gates, VALUES, CLASSES)
    assert not result["passed"]
    assert result["failed"] == ["sensitivity[b] >= 0.8"]
    assert [g["passed"] for g in result["gates"]] == [True, True, False, True]


def test_ci_judging_uses_the_harder_bound() -> None:
    gates = {"accuracy": {"min": 0.85}, "ece": {"max": 0.08}, "latency_p95_ms": {"max": 500}}
    assert judge_gates(gates, VALUES, CLASSES, on="point")["passed"]
    result = judge_gates(gates, VALUES, CLASSES, on="ci")
    assert result["failed"] == ["accuracy >= 0.85", "ece <= 0.08"]
    assert result["gates"][0]["judged_value"] == 0.82
    assert result["gates"][2]["judged_on"] == "point"  # latency has no interval


def test_listed_classes_operating_point_and_switched_off_gates() -> None:
    gates = {
        "sensitivity": {"min": 0.8, "classes": ["a"]},
        "operating_sensitivity": {"min": 0.9, "classes": ["b"]},
        "accuracy": None,
    }
    assert judge_gates(gates, VALUES, CLASSES)["passed"]


def test_unmeasured_gate_fails_and_bad_gates_are_named() -> None:
    result = judge_gates({"throughput_images_per_s": {"min": 10}}, VALUES, CLASSES)
    assert not result["passed"] and result["gates"][0]["reason"] == "not measured on this data"
    with pytest.raises(MedclfError, match=r"eval.gates.sensitivity.classes: \['c'\]"):
        judge_gates({"sensitivity": {"min": 0.8, "classes": ["c"]}}, VALUES, CLASSES)
    with pytest.raises(MedclfError, match=r"eval\.gates\.accuracy: give min and/or max"):
        judge_gates({"accuracy": {"minimum": 0.8}}, VALUES, CLASSES)
    with pytest.raises(MedclfError, match="unknown metric 'acuracy'"):
        judge_gates({"acuracy": {"min": 0.8}}, VALUES, CLASSES)
