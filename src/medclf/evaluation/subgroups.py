"""Subgroup metrics for the manifest's metadata columns (sex, age band, site, ...).

A model that is accurate overall can fail one group; a reviewer asks for the breakdown. Numeric
``age`` columns are cut into bands; other columns with at most ``MAX_LEVELS`` distinct values
are grouped as they are. Accuracy (``{"value", "ci_low", "ci_high"}`` like every metric)
gets a percentile bootstrap interval (patients as units), since small groups make point values
misleading.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medclf.evaluation.bootstrap import bootstrap_intervals, resampling_units
from medclf.evaluation.metrics import MetricSuite

MAX_LEVELS = 12
SUBGROUP_RESAMPLES = 500


def _levels(column: pd.Series, name: str, band: int) -> pd.Series | None:
    values = column.astype(str).str.strip()
    if name.lower() in ("age", "patient_age", "age_years"):
        numeric = pd.to_numeric(values.str.extract(r"(\d+(?:\.\d+)?)")[0], errors="coerce")
        if numeric.notna().any():
            lo = (numeric // band * band).astype("Int64")
            return lo.map(lambda v: f"{v}-{v + band - 1}" if pd.notna(v) else "unknown")
    values = values.replace({"": "unknown", "nan": "unknown"})
    return values if 1 < values.nunique() <= MAX_LEVELS else None


def subgroup_metrics(
    table: pd.DataFrame,
    y: np.ndarray,
    probs: np.ndarray,
    classes: tuple[str, ...],
    columns: list[str],
    age_band_years: int = 20,
) -> dict[str, Any]:
    suite = MetricSuite(classes)
    keys = suite.keys()
    picks = ["accuracy", "balanced_accuracy", "macro_auc"] + [f"sensitivity[{c}]" for c in classes]
    idx = [keys.index(k) for k in picks]
    out: dict[str, Any] = {}
    for col in columns:
        levels = _levels(table[col], col, age_band_years)
        if levels is None:
            continue
        groups = {}
        for level in sorted(levels.unique(), key=str):
            rows = np.flatnonzero((levels == level).to_numpy())
            values = suite.compute(y[rows], probs[rows])
            entry: dict[str, Any] = {"n": len(rows)}
            entry.update({k: float(values[i]) for k, i in zip(picks, idx, strict=True)})
            entry["accuracy"] = {"value": entry["accuracy"]}
            units = resampling_units(table["patient_id"].astype(str).iloc[rows].tolist(), len(rows))
            if len(units) >= 5:
                hit = (probs[rows].argmax(1) == y[rows]).astype(float)
                (ci,) = bootstrap_intervals(
                    lambda r, hit=hit: np.array([hit[r].mean()]),
                    units,
                    n_resamples=SUBGROUP_RESAMPLES,
                    method="percentile",
                )
                entry["accuracy"].update(ci_low=ci.low, ci_high=ci.high)
            groups[str(level)] = entry
        out["age_band" if col.lower().startswith("age") else col] = groups
    return out
