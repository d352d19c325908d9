"""Bootstrap confidence intervals for a vector of metrics (scipy.stats.bootstrap).

Resampling units are patients when patient ids exist: images of one patient are correlated,
and resampling them independently makes intervals too narrow. The unit indices are what scipy
resamples; the statistic maps a resample of units back to its rows and computes every metric
at once, so all metrics share the same resamples.

A resample in which a metric is undefined (no positive of a class, so no AUC) gives NaN for
that metric; its interval then comes from the defined resamples (percentile), and the number
used is reported. BCa falls back to percentile where its jackknife is degenerate, and where
the bootstrap distribution is degenerate: when at least ``DEGENERATE_SHARE`` of the resamples
give one same value (a PPV of 22 of 23 is 1.0 in a third of them), BCa's bias correction is
driven by ties and its interval swings (the demo's nodule PPV 0.957 got [0.567, 1.000]); the
percentile interval holds there, and the value's ``ci_method`` says which was used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

METHODS = {"bca": "BCa", "percentile": "percentile", "basic": "basic"}
DEGENERATE_SHARE = 0.2


@dataclass
class Interval:
    low: float
    high: float
    method: str
    resamples: int


def resampling_units(groups: Sequence[str] | None, n_rows: int) -> list[np.ndarray]:
    """Row indices per unit: one unit per non-empty group id, one per row without an id."""
    if groups is None:
        return [np.array([i]) for i in range(n_rows)]
    units: dict[str, list[int]] = {}
    singles: list[np.ndarray] = []
    for i, g in enumerate(groups):
        if g is None or str(g) in ("", "nan"):
            singles.append(np.array([i]))
        else:
            units.setdefault(str(g), []).append(i)
    return [np.array(v) for v in units.values()] + singles


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], np.ndarray],
    units: list[np.ndarray],
    n_resamples: int = 1000,
    level: float = 0.95,
    method: str = "bca",
    seed: int = 0,
) -> list[Interval]:
    """One interval per component of ``statistic(rows)``."""
    key = str(method).lower()
    if key not in METHODS:
        raise ValueError(f"eval.ci_method must be one of {', '.join(METHODS)}, got {method!r}")
    singletons = all(len(u) == 1 for u in units)
    flat = np.concatenate(units) if singletons else None

    def on_units(unit_idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(unit_idx, dtype=np.int64)
        rows = flat[idx] if flat is not None else np.concatenate([units[i] for i in idx])
        return statistic(rows)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate/NaN resamples are handled below
        res = bootstrap(
            (np.arange(len(units)),),
            on_units,
            n_resamples=n_resamples,
            confidence_level=level,
            method=METHODS[key],
            vectorized=False,
            rng=np.random.default_rng(seed),
        )
    dist = np.atleast_2d(res.bootstrap_distribution)
    low = np.atleast_1d(res.confidence_interval.low)
    high = np.atleast_1d(res.confidence_interval.high)
    alpha = (1 - level) / 2
    out = []
    for j in range(dist.shape[0]):
        finite = dist[j][np.isfinite(dist[j])]
        bca_defined = bool(np.isfinite(low[j]) and np.isfinite(high[j]))
        tied = key == "bca" and len(finite) > 0 and _mode_share(finite) >= DEGENERATE_SHARE
        if bca_defined and not tied:
            out.append(Interval(float(low[j]), float(high[j]), METHODS[key], len(finite)))
        elif len(finite) == 0:
            out.append(Interval(float("nan"), float("nan"), "undefined", 0))
        else:
            lo, hi = np.quantile(finite, [alpha, 1 - alpha])
            why = " (BCa: tied resamples)" if tied and bca_defined else ""
            out.append(Interval(float(lo), float(hi), "percentile" + why, len(finite)))
    return out


def _mode_share(values: np.ndarray) -> float:
    """The share of ``values`` equal (to 1e-12) to their most common value."""
    _, counts = np.unique(np.round(values, 12), return_counts=True)
    return float(counts.max() / len(values))
