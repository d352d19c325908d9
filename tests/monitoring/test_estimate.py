"""The label-free estimate: its interval holds the realised accuracy at the stated rate when
the probabilities are calibrated, and misses it when they are overconfident."""

import numpy as np
import pytest

from medclf.monitoring.estimate import label_free

CLASSES = ("a", "b", "c")


def _calibrated(rng: np.random.Generator, n: int, sharpness: float = 0.4) -> np.ndarray:
    return rng.dirichlet(np.full(len(CLASSES), sharpness), size=n)


def _realised(p: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    predicted = p.argmax(axis=1)
    sens = np.array([np.mean(predicted[labels == c] == c) for c in range(len(CLASSES))])
    return float(np.mean(predicted == labels)), sens


def _labels(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return np.array([rng.choice(len(CLASSES), p=row) for row in p])


def test_expected_accuracy_is_the_mean_confidence_and_sensitivities_are_named():
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    est = label_free(p, CLASSES, draws=500)
    assert est.accuracy.value == pytest.approx((0.9 + 0.7 + 0.4 + 0.6) / 4)
    assert est.accuracy.low <= est.accuracy.value <= est.accuracy.high
    # class a: expected hits 0.9 + 0.6 of expected positives 0.9 + 0.2 + 0.3 + 0.6
    assert est.sensitivity["a"].value == pytest.approx(1.5 / 2.0)
    assert set(est.sensitivity) == set(CLASSES) and est.images == 4


def test_the_interval_covers_the_realised_accuracy_at_its_rate_when_calibrated():
    rng = np.random.default_rng(0)
    covered, sens_covered, overconfident_covered = [], [], []
    for seed in range(120):
        p = _calibrated(rng, 300)
        labels = _labels(rng, p)
        accuracy, sensitivity = _realised(p, labels)
        est = label_free(p, CLASSES, draws=400, seed=seed)
        covered.append(est.accuracy.low <= accuracy <= est.accuracy.high)
        sens_covered.append(est.sensitivity["b"].low <= sensitivity[1] <= est.sensitivity["b"].high)
        # the same labels, but the model claims more confidence than it has
        sharper = p**3 / (p**3).sum(axis=1, keepdims=True)
        over = label_free(sharper, CLASSES, draws=400, seed=seed)
        overconfident_covered.append(over.accuracy.low <= accuracy <= over.accuracy.high)
    assert 0.90 <= np.mean(covered) <= 0.99  # 95% intervals
    assert 0.88 <= np.mean(sens_covered) <= 0.995
    assert np.mean(overconfident_covered) < 0.2  # miscalibration shows


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        label_free(np.ones((3, 2)), CLASSES)
    with pytest.raises(ValueError):
        label_free(np.ones((0, 3)), CLASSES)
