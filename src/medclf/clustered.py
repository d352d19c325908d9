"""Two-sample tests for images clustered in patients.

Several slices or views of one patient are not independent images: they share the patient's
anatomy, scanner and protocol. A test that counts them as independent rows rejects far more
often than its level. Both the data check (``data.shift``: do the splits look alike?) and
drift monitoring (``monitoring.drift``: does new traffic look like the reference?) correct
for it the same way: each sample counts as its effective size ``n / design effect``, with the
design effect ``1 + (m - 1) * ICC`` (Kish) from the intraclass correlation of the feature.
Written here, below both, because scipy's tests take independent rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp, kstwobign


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def _cluster_sizes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, index, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return index, sizes


def mean_cluster_size(groups: np.ndarray) -> float:
    """The size-weighted mean cluster size ``sum(m_i^2) / n`` (1 when no row shares a group)."""
    _, sizes = _cluster_sizes(groups)
    return float(np.sum(sizes.astype(np.float64) ** 2) / max(int(sizes.sum()), 1))


def intraclass_correlation(values: np.ndarray, groups: np.ndarray) -> float:
    """The one-way ANOVA estimate of the intraclass correlation of ``values`` clustered in
    ``groups``, clipped to [0, 1]; 0 when every row is its own group (or all share one)."""
    y = np.asarray(values, np.float64).ravel()
    index, sizes = _cluster_sizes(groups)
    n, k = y.size, sizes.size
    if k in (0, 1, n):
        return 0.0
    means = np.bincount(index, weights=y) / sizes
    between = float(np.sum(sizes * (means - y.mean()) ** 2) / (k - 1))
    within = float(np.sum((y - means[index]) ** 2) / (n - k))
    n0 = (n - np.sum(sizes**2) / n) / (k - 1)
    denominator = between + (n0 - 1) * within
    return 0.0 if denominator <= 0 else float(np.clip((between - within) / denominator, 0, 1))


def design_effect(values: np.ndarray, groups: np.ndarray) -> float:
    """How many times larger the variance of a mean is for rows clustered in ``groups``
    (patients) than for independent rows: ``1 + (m - 1) * ICC``. 1 when every row is its own
    group."""
    icc = intraclass_correlation(values, groups)
    return float(1.0 + (mean_cluster_size(groups) - 1.0) * icc)


def ks(
    reference: np.ndarray,
    current: np.ndarray,
    design_effect: float = 1.0,
    current_design_effect: float | None = None,
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test of a numeric feature. With design effects above 1
    (``current_design_effect`` defaults to the reference's), each sample counts as
    ``n / design_effect`` independent images and the p-value is the asymptotic Kolmogorov
    distribution's at those sizes; with none, scipy's (exact for small samples)."""
    result = ks_2samp(np.ravel(reference), np.ravel(current))
    other = design_effect if current_design_effect is None else current_design_effect
    if design_effect <= 1.0 and other <= 1.0:
        return TestResult(float(result.statistic), float(result.pvalue))
    n = np.size(reference) / max(design_effect, 1.0)
    m = np.size(current) / max(other, 1.0)
    scale = np.sqrt(n * m / (n + m))
    return TestResult(float(result.statistic), float(kstwobign.sf(result.statistic * scale)))
