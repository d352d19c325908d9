"""Quality gates: named limits on metrics, judged on the point value or the confidence bound.

``eval.gates`` maps a metric name (any alias in ``metric_names.METRICS``, ``operating_<metric>`` for
the per-class value at the stored threshold, or one of ``MEASURES``) to ``min`` and/or ``max``;
per-class metrics take ``classes: all`` or a list. With ``eval.gates_on: ci`` a minimum is
judged on the interval's lower bound and a maximum on its upper bound, so a gate passes only
when the data support it. The registry refuses to promote a model whose gates failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medclf.errors import MedclfError
from medclf.metric_names import OPERATING_KEYS, resolve_metric

# Values measured outside the predictions (no confidence interval).
MEASURES = {
    "latency_p50_ms": "median single-image latency (decode + preprocess + model), ms",
    "latency_p95_ms": "95th percentile single-image latency, ms",
    "throughput_images_per_s": "images per second at batch 32 (model only)",
    "train_imbalance_ratio": "largest / smallest training class count",
}


def _targets(name: str, spec: Mapping[str, Any], classes: tuple[str, ...]) -> list[str]:
    """The flat metric keys a gate applies to."""
    if name in MEASURES:
        return [name]
    operating = name.startswith("operating_")
    base = name.removeprefix("operating_")
    metric = resolve_metric(base)
    if operating and metric.name not in OPERATING_KEYS:
        raise MedclfError(
            f"eval.gates.{name}: operating-point gates take one of "
            f"{', '.join('operating_' + k for k in OPERATING_KEYS)}"
        )
    if metric.scope == "overall":
        return [metric.name]
    wanted = spec.get("classes", "all")
    if wanted in (None, "all"):
        chosen = list(classes)
    else:
        chosen = [str(c) for c in (wanted if isinstance(wanted, list | tuple) else [wanted])]
        unknown = [c for c in chosen if c not in classes]
        if unknown:
            raise MedclfError(
                f"eval.gates.{name}.classes: {unknown} are not classes of this model "
                f"({', '.join(classes)})"
            )
    prefix = "operating_" if operating else ""
    return [f"{prefix}{metric.name}[{c}]" for c in chosen]


def judge_gates(
    gates: Mapping[str, Any],
    values: Mapping[str, Mapping[str, float]],
    classes: tuple[str, ...],
    on: str = "point",
) -> dict[str, Any]:
    """``values``: flat key -> {"value", "ci_low", "ci_high"}; returns the gates.json record."""
    if on not in ("point", "ci"):
        raise MedclfError(f"eval.gates_on must be point or ci, got {on!r}")
    results = []
    for name, spec in (gates or {}).items():
        if spec is None:
            continue  # eval.gates.NAME=null switches a shipped gate off
        if not isinstance(spec, Mapping) or not ({"min", "max"} & set(spec)):
            raise MedclfError(f"eval.gates.{name}: give min and/or max, e.g. {{min: 0.8}}")
        unknown = set(spec) - {"min", "max", "classes"}
        if unknown:
            raise MedclfError(f"eval.gates.{name}: unknown keys {sorted(unknown)}")
        for key in _targets(str(name), spec, classes):
            measured = values.get(key)
            for bound, op in (("min", ">="), ("max", "<=")):
                if spec.get(bound) is None:
                    continue
                limit = float(spec[bound])
                entry: dict[str, Any] = {"gate": f"{key} {op} {limit:g}", "metric": key}
                entry.update({"op": op, "limit": limit})
                if measured is None or not np.isfinite(measured.get("value", np.nan)):
                    entry.update(
                        value=None,
                        judged_value=None,
                        judged_on=on,
                        passed=False,
                        reason="not measured on this data",
                    )
                    results.append(entry)
                    continue
                value = float(measured["value"])
                judged, judged_on = value, "point"
                if on == "ci":
                    bound_key = "ci_low" if bound == "min" else "ci_high"
                    ci = measured.get(bound_key)
                    if ci is not None and np.isfinite(ci):
                        judged, judged_on = float(ci), bound_key
                passed = judged >= limit if bound == "min" else judged <= limit
                entry.update(
                    value=value, judged_value=judged, judged_on=judged_on, passed=bool(passed)
                )
                results.append(entry)
    return {
        "passed": all(r["passed"] for r in results),
        "judged_on": on,
        "failed": [r["gate"] for r in results if not r["passed"]],
        "gates": results,
    }
