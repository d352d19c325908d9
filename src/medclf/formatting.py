"""How numbers read, in one place: the console, the HTML report, the model card, the training
summary and ``medclf compare`` all print a metric the same way (three decimals, ``n/a`` for a
value that could not be computed, an interval as ``low-high``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DIGITS = 3


def number(value: Any, digits: int = DIGITS) -> str:
    """``0.912``; ``n/a`` for None or NaN (a metric undefined on this data)."""
    if value is None or math.isnan(value := float(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def interval(metric: Mapping[str, Any] | None, digits: int = DIGITS, sep: str = "-") -> str:
    """``0.871-0.945`` from a metric's ``ci_low``/``ci_high``; empty without an interval."""
    if not metric:
        return ""
    lo, hi = metric.get("ci_low"), metric.get("ci_high")
    if number(lo) == "n/a" or number(hi) == "n/a":
        return ""
    return f"{number(lo, digits)}{sep}{number(hi, digits)}"


def estimate(metric: Mapping[str, Any] | None, digits: int = DIGITS) -> str:
    """``0.912 (0.871-0.945)``: a metric's value with its interval when there is one."""
    if not metric or number(metric.get("value")) == "n/a":
        return "n/a"
    text = number(metric["value"], digits)
    bounds = interval(metric, digits)
    return f"{text} ({bounds})" if bounds else text


def metrics_line(metrics: Mapping[str, float]) -> str:
    """``epoch=12, val/loss=0.2310, val/acc=0.9120``: a training epoch's logged values (four
    decimals: these are compared between epochs, not reported with intervals)."""
    return ", ".join(
        f"{k}={int(v)}" if k == "epoch" else f"{k}={number(v, 4)}" for k, v in metrics.items()
    )
