"""The service's drift window: nothing before enough images, then PSI values that separate
the reference's distribution from a shifted one."""

import numpy as np

from medclf.monitoring.live import MIN_LIVE, LiveWindow
from medclf.monitoring.profile import ReferenceProfile


def _reference(rng: np.random.Generator) -> ReferenceProfile:
    probs = rng.dirichlet([1, 1], size=200)
    return ReferenceProfile(
        classes=("a", "b"),
        model_version="v",
        intensity=rng.normal(0.5, 0.1, size=(400, 5)),
        probabilities={"validation": probs[:100], "test": probs[100:]},
        refer_share={"validation": None, "test": None},
    )


def test_values_only_once_enough_images_and_a_shift_shows():
    rng = np.random.default_rng(0)
    same, shifted = LiveWindow(_reference(rng), size=300), LiveWindow(_reference(rng), size=300)
    for i in range(300):
        probs = rng.dirichlet([1, 1])
        same.add(rng.normal(0.5, 0.1, size=5), probs)
        shifted.add(rng.normal(0.65, 0.1, size=5), probs)
        if i == MIN_LIVE - 2:
            assert same.values() is None
    assert same.values()["images"] == 300
    assert max(same.values()["psi"].values()) < 0.25 < min(shifted.values()["psi"].values())
    assert 0.5 <= same.values()["expected_accuracy"] <= 1
    assert same.values()["estimate_valid"] is True
    # under input drift the label-free estimate is invalid, not a reassuring number (#31)
    assert shifted.values()["estimate_valid"] is False
    assert np.isnan(shifted.values()["expected_accuracy"])


def test_raw_tensors_give_class_and_accuracy_gauges_without_feature_psi():
    rng = np.random.default_rng(1)
    window = LiveWindow(_reference(rng))
    for _ in range(MIN_LIVE):
        window.add(None, rng.dirichlet([1, 1]))
    values = window.values()
    assert values["psi"] == {} and values["class_psi"] >= 0
