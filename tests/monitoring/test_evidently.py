"""Evidently's reports from the monitor's own data (the optional extra, installed in dev)."""

import json
from pathlib import Path

import numpy as np
import pytest

from medclf.errors import MedclfError
from medclf.monitoring import evidently_report
from medclf.monitoring.features import INTENSITY_FEATURES
from medclf.monitoring.monitor import Current
from medclf.monitoring.profile import ReferenceProfile

CLASSES = ("a", "b")


def _sample(rng: np.random.Generator, n: int, mean_shift: float) -> tuple[np.ndarray, np.ndarray]:
    features = rng.normal(0.5, 0.1, (n, len(INTENSITY_FEATURES)))
    features[:, 0] += mean_shift
    p = rng.uniform(0.5, 1.0, n)
    return features, np.stack([p, 1 - p], axis=1)


def test_evidently_renders_both_reports_and_sees_the_shifted_column(tmp_path: Path):
    rng = np.random.default_rng(0)
    ref_features, ref_probs = _sample(rng, 300, 0.0)
    reference = ReferenceProfile(CLASSES, "v", ref_features, {"validation": ref_probs}, {})
    features, probs = _sample(rng, 200, 0.2)
    features[:3] = np.nan  # rows without features (raw tensors) are left out
    current = Current(features, probs, [{}] * 200)
    verdicts = evidently_report.render(reference, current, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(evidently_report.FILES.values())
    html = (tmp_path / "evidently_inputs.html").read_text()
    assert "K-S" in html and "p99" in html and "<script src" not in html  # self-contained
    inputs = verdicts["inputs"]
    assert inputs["columns"]["mean"]["value"] < 1e-6  # KS p-value of the shifted feature
    assert inputs["drifted_columns"] >= 1 and set(inputs["columns"]) == set(INTENSITY_FEATURES)
    assert verdicts["predictions"]["columns"]["confidence"]["value"] > 1e-3  # unchanged
    json.dumps(verdicts)  # what monitor.json records


def test_the_mode_decides_and_always_without_evidently_is_one_line(monkeypatch):
    assert evidently_report.wanted("auto") and not evidently_report.wanted("never")
    monkeypatch.setattr(evidently_report.importlib.util, "find_spec", lambda name: None)
    assert not evidently_report.wanted("auto")
    with pytest.raises(MedclfError, match=r"pip install 'medclf\[evidently\]'"):
        evidently_report.wanted("always")
