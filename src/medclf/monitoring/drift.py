"""Drift statistics between a reference sample (the training-time profile) and a current one
(live traffic, a folder of new images).

PSI and the kernel MMD are short formulas computed here on numpy; the KS test, corrected for
images clustered in patients, is ``medclf.clustered``'s (scipy's, at effective sizes).
Evidently computes similar statistics but is a heavy dependency for three formulas (it is
meant as an optional report renderer), and alibi-detect's MMD detector is not open source for
production use (Business Source Licence), so neither is imported here.
"""

from __future__ import annotations

import numpy as np

from medclf.clustered import TestResult

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
