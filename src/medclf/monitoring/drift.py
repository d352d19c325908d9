"""Drift statistics between a reference sample (the training-time profile) and a current one
(live traffic, a folder of new images).

PSI and the kernel MMD are short formulas computed here on numpy; the KS test is scipy's.
Evidently computes similar statistics but is a heavy dependency for three formulas (it is
meant as an optional report renderer), and alibi-detect's MMD detector is not open source for
production use (Business Source Licence), so neither is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp, kstwobign

# an empty bin's share is floored here so PSI stays finite while an empty bin still weighs
# heavily (a bin that held 10% and now holds nothing adds 0.1 * ln(0.1 / 1e-4) = 0.69)
SHARE_FLOOR = 1e-4


def _psi_of_shares(reference: np.ndarray, current: np.ndarray) -> float:
    r = np.clip(reference, SHARE_FLOOR, None)
    c = np.clip(current, SHARE_FLOOR, None)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of a numeric feature: bins are the reference's quantiles
    (equal reference shares; fewer when the reference has ties), right-closed, so a value on
    a cut point goes to the lower bin. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate,
    > 0.25 shifted. With no shift at all PSI is still about (bins - 1) * (1/n + 1/m) on
    average (sampling noise): 0.11 for 160 vs 160 images at 10 bins, 0.036 for 500 vs 500,
    so windows of a few hundred images are needed before the rule of thumb means anything."""
    ref = np.asarray(reference, np.float64).ravel()
    cur = np.asarray(current, np.float64).ravel()
    if ref.size == 0 or cur.size == 0:
        raise ValueError("psi needs at least one reference and one current value")
    cuts = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = [
        np.bincount(np.searchsorted(cuts, x, side="left"), minlength=cuts.size + 1) / x.size
        for x in (ref, cur)
    ]
    return _psi_of_shares(*shares)


def categorical_psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of category shares (predicted classes, decisions) from counts per category."""
    ref = np.asarray(reference_counts, np.float64)
    cur = np.asarray(current_counts, np.float64)
    if ref.shape != cur.shape or ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("categorical_psi needs two non-empty count vectors of one length")
    return _psi_of_shares(ref / ref.sum(), cur / cur.sum())


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def ks(reference: np.ndarray, current: np.ndarray, design_effect: float = 1.0) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test of a numeric feature. With a ``design_effect``
    above 1 (images clustered in patients), both samples count as ``n / design_effect``
    independent images and the p-value is the asymptotic Kolmogorov distribution's at those
    sizes: scipy's p-value assumes independent rows, and on clustered images rejects far
    more often than its level."""
    result = ks_2samp(np.ravel(reference), np.ravel(current))
    if design_effect <= 1.0:
        return TestResult(float(result.statistic), float(result.pvalue))
    n = np.size(reference) / design_effect
    m = np.size(current) / design_effect
    scale = np.sqrt(n * m / (n + m))
    return TestResult(float(result.statistic), float(kstwobign.sf(result.statistic * scale)))


def design_effect(values: np.ndarray, groups: np.ndarray) -> float:
    """How many times larger the variance of a mean is for rows clustered in ``groups``
    (patients) than for independent rows: ``1 + (m - 1) * ICC``, with ``m`` the
    size-weighted mean cluster size and the intraclass correlation from one-way ANOVA
    (clipped to [0, 1]). 1 when every row is its own group."""
    y = np.asarray(values, np.float64).ravel()
    _, index, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    n, k = y.size, sizes.size
    if k in (0, 1, n):
        return 1.0
    means = np.bincount(index, weights=y) / sizes
    between = float(np.sum(sizes * (means - y.mean()) ** 2) / (k - 1))
    within = float(np.sum((y - means[index]) ** 2) / (n - k))
    n0 = (n - np.sum(sizes**2) / n) / (k - 1)
    denominator = between + (n0 - 1) * within
    icc = 0.0 if denominator <= 0 else float(np.clip((between - within) / denominator, 0, 1))
    return float(1.0 + (np.sum(sizes**2) / n - 1.0) * icc)


def _squared_distances(z: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", z, z)
    return np.clip(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0, None)


def mmd(
    reference: np.ndarray, current: np.ndarray, permutations: int = 500, seed: int = 0
) -> TestResult:
    """Kernel two-sample test on embeddings (rows): the unbiased squared MMD with a Gaussian
    kernel whose bandwidth is the median pairwise distance of the pooled sample, and its
    permutation p-value ``(1 + #{permuted >= observed}) / (1 + permutations)``.

    The pooled kernel matrix is computed once; a permutation only reassigns rows, so all
    permutations' block sums come from one matrix product (``K @ S``), not from
    ``permutations`` kernel evaluations (what a generic permutation test would do). Memory
    and time grow with (n + m)^2: callers sample a few hundred rows per side."""
    x = np.asarray(reference, np.float64)
    y = np.asarray(current, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2 or x.ndim != 2 or x.shape[1:] != y.shape[1:]:
        raise ValueError("mmd needs two samples of at least 2 rows with the same columns")
    sq = _squared_distances(np.vstack([x, y]))
    off_diagonal = sq[~np.eye(n + m, dtype=bool)]
    scale = np.median(off_diagonal[off_diagonal > 0]) if np.any(off_diagonal > 0) else 1.0
    kernel = np.exp(-sq / scale)
    rng = np.random.default_rng(seed)
    # column 0: the observed split; then one column per permutation (1 = reference row)
    members = np.zeros((n + m, permutations + 1))
    members[:n, 0] = 1.0
    for j in range(1, permutations + 1):
        members[rng.permutation(n + m)[:n], j] = 1.0
    stats = _unbiased_mmd2(kernel, members, n, m)
    observed = stats[0]
    p_value = (1 + np.sum(stats[1:] >= observed)) / (1 + permutations)
    return TestResult(float(observed), float(p_value))


def _unbiased_mmd2(kernel: np.ndarray, members: np.ndarray, n: int, m: int) -> np.ndarray:
    """The unbiased squared MMD of each column's split (1 = first sample) of the pooled rows;
    the kernel's diagonal is 1 (Gaussian), so within-sample sums drop n and m."""
    others = 1.0 - members
    k_members = kernel @ members
    within_x = np.einsum("ij,ij->j", members, k_members) - n
    within_y = np.einsum("ij,ij->j", others, kernel @ others) - m
    between = np.einsum("ij,ij->j", others, k_members)
    return within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2.0 * between / (n * m)
