"""Drift statistics: shifts are flagged, the same distribution is not (false alarms measured
over seeds), on plain samples and on phantom images with a contrast change."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from medclf.clustered import design_effect, ks
from medclf.data.synth import _patient, render_slice
from medclf.monitoring.drift import categorical_psi, mmd, psi
from medclf.monitoring.features import INTENSITY_FEATURES, intensity_features

PSI_SHIFTED = 0.25  # the rule of thumb's "shifted"


def test_psi_is_zero_for_equal_shares_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    small, large = psi(ref, ref + 0.1), psi(ref, ref + 1.0)
    assert 0 < small < 0.1 < PSI_SHIFTED < large


def test_psi_false_alarms_over_seeds_its_noise_floor_and_a_shift_flagged():
    rng = np.random.default_rng(1)
    same = np.array([psi(rng.normal(size=500), rng.normal(size=500)) for _ in range(200)])
    shifted = [psi(rng.normal(size=500), rng.normal(0.75, 1, size=500)) for _ in range(50)]
    assert np.mean(same > PSI_SHIFTED) == 0.0  # false alarm rate at 500 vs 500
    assert np.mean(same > 0.1) < 0.05
    assert np.mean(same) == pytest.approx(9 * (2 / 500), rel=0.25)  # the documented floor
    assert min(shifted) > PSI_SHIFTED


def test_psi_of_a_constant_reference_and_of_categories():
    assert psi(np.zeros(100), np.zeros(50)) == pytest.approx(0.0)
    assert psi(np.zeros(100), np.ones(50)) > 5  # everything moved to the other bin
    assert categorical_psi([50, 50], [50, 50]) == pytest.approx(0.0)
    assert categorical_psi([50, 50], [90, 10]) > PSI_SHIFTED
    with pytest.raises(ValueError):
        categorical_psi([1, 2], [1, 2, 3])


def test_ks_is_scipys_two_sample_test():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=300)
    expected = ks_2samp(a, b)
    assert ks(a, b).statistic == pytest.approx(expected.statistic)
    assert ks(a, b).p_value == pytest.approx(expected.pvalue)


def _mmd_by_definition(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / scale)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()


def test_mmd_statistic_matches_its_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.5, 1, size=(40, 4))
    z = np.vstack([x, y])
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    scale = np.median(d[~np.eye(70, dtype=bool)])
    assert mmd(x, y, permutations=10).statistic == pytest.approx(_mmd_by_definition(x, y, scale))


def test_mmd_p_values_hold_their_level_and_find_a_shift_in_embeddings():
    rng = np.random.default_rng(4)
    same = [
        mmd(rng.normal(size=(80, 16)), rng.normal(size=(80, 16)), 200, seed=s).p_value
        for s in range(40)
    ]
    assert np.mean(np.array(same) < 0.01) <= 0.05  # 0.01 expected; 2 of 40 allowed
    assert 0.3 < np.mean(same) < 0.7  # roughly uniform under the null
    shifted = [
        mmd(rng.normal(size=(80, 16)), rng.normal(0.4, 1, size=(80, 16)), 200, seed=s).p_value
        for s in range(10)
    ]
    assert max(shifted) < 0.01


def _phantom_features(seed: int, n: int, contrast: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = ("normal", "nodule", "ground_glass", "cavity")
    images = [
        render_slice(classes[i % 4], _patient(rng, 64), 64, rng) for i in range(n)
    ]  # fmt: skip
    return np.stack([intensity_features(np.clip(im * contrast, 0, 1)) for im in images])


def test_a_contrast_change_of_phantoms_is_flagged_and_a_new_sample_is_not():
    reference = _phantom_features(seed=10, n=400)
    same_scanner = _phantom_features(seed=11, n=400)
    new_scanner = _phantom_features(seed=12, n=400, contrast=0.85)
    mean = INTENSITY_FEATURES.index("mean")
    assert psi(reference[:, mean], same_scanner[:, mean]) < 0.1
    assert ks(reference[:, mean], same_scanner[:, mean]).p_value > 0.01
    assert psi(reference[:, mean], new_scanner[:, mean]) > PSI_SHIFTED
    assert ks(reference[:, mean], new_scanner[:, mean]).p_value < 1e-6


def _clustered(rng: np.random.Generator, patients: int) -> tuple[np.ndarray, np.ndarray]:
    """1-4 slices per patient, each patient's level shared by its slices (ICC 0.8)."""
    sizes = rng.integers(1, 5, patients)
    levels = np.repeat(rng.normal(0, np.sqrt(0.8), patients), sizes)
    values = levels + rng.normal(0, np.sqrt(0.2), sizes.sum())
    return values, np.repeat(np.arange(patients), sizes)


def test_the_design_effect_of_patients_with_several_slices():
    rng = np.random.default_rng(0)
    values, groups = _clustered(rng, 400)
    sizes = np.bincount(groups)
    expected = 1 + (np.sum(sizes**2) / sizes.sum() - 1) * 0.8  # 1 + (m - 1) * ICC
    assert design_effect(values, groups) == pytest.approx(expected, rel=0.1)
    assert design_effect(values, np.arange(values.size)) == 1.0  # every slice its own patient
    assert design_effect(rng.normal(size=600), np.repeat(np.arange(200), 3)) < 1.15
    assert design_effect(np.repeat([1.0, 2.0], 3), np.repeat([0, 1], 3)) == pytest.approx(3.0)


def test_clustered_images_false_alarm_without_the_design_effect_and_not_with_it():
    """The same distribution of patients on both sides, 200 draws: scipy's KS p-value
    (independent rows assumed) rejects at 1% far more often than 1%; counted as n / deff
    independent images it holds its level."""
    rng = np.random.default_rng(1)
    naive, corrected = [], []
    for _ in range(200):
        (ref, ref_groups), (cur, _) = _clustered(rng, 70), _clustered(rng, 60)
        naive.append(ks(ref, cur).p_value < 0.01)
        corrected.append(ks(ref, cur, design_effect(ref, ref_groups)).p_value < 0.01)
    assert np.mean(naive) > 0.04
    assert np.mean(corrected) <= 0.025
