"""Drift of the service's most recent predictions, for its ``/metrics`` gauges.

The service keeps the intensity features and probabilities of its last ``size`` images and,
when Prometheus scrapes, compares them with the model's reference profile: PSI per feature,
the class-share PSI and the label-free expected accuracy. The alerting decision (KS and
chi-square tests, thresholds, windows) stays with ``medclf monitor`` and with the alert rules
people write on these gauges.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from medclf.monitoring.drift import categorical_psi, psi
from medclf.monitoring.features import INTENSITY_FEATURES
from medclf.monitoring.profile import ReferenceProfile

LIVE_WINDOW = 500  # images: a few minutes of a busy service, enough for PSI's noise floor
MIN_LIVE = 30  # fewer: no values (PSI of a handful of images is noise)
# A feature PSI above this (monitor.psi_alert's default) marks the label-free estimate invalid:
# the noise floor of 500 images against a reference of 100 is about 0.11.
INVALID_PSI = 0.25


class LiveWindow:
    def __init__(self, reference: ReferenceProfile, size: int = LIVE_WINDOW) -> None:
        self.reference = reference
        self._rows: deque[tuple[np.ndarray | None, np.ndarray]] = deque(maxlen=size)
        self._lock = threading.Lock()  # appended on the event loop, read in a scrape thread
        held = np.concatenate(list(reference.probabilities.values()))
        self._reference_counts = np.bincount(held.argmax(axis=1), minlength=len(reference.classes))

    def add(self, features: np.ndarray | None, probabilities: np.ndarray) -> None:
        with self._lock:
            self._rows.append((features, np.asarray(probabilities, np.float64)))

    def values(self) -> dict[str, Any] | None:
        """The gauges' values, or None while fewer than ``MIN_LIVE`` images were seen."""
        with self._lock:
            rows = list(self._rows)
        if len(rows) < MIN_LIVE:
            return None
        probs = np.stack([p for _, p in rows])
        counts = np.bincount(probs.argmax(axis=1), minlength=len(self.reference.classes))
        out: dict[str, Any] = {
            "images": len(rows),
            "class_psi": categorical_psi(self._reference_counts, counts),
            "expected_accuracy": float(probs.max(axis=1).mean()),
            "psi": {},
        }
        features = [f for f, _ in rows if f is not None]
        if len(features) >= MIN_LIVE:
            recorded = np.stack(features)
            out["psi"] = {
                name: psi(self.reference.intensity[:, j], recorded[:, j])
                for j, name in enumerate(INTENSITY_FEATURES)
            }
        # a confidence-based estimate holds only while inputs look like the reference: under
        # input drift it is reported as invalid (NaN), not as a reassuring number
        out["estimate_valid"] = all(v <= INVALID_PSI for v in out["psi"].values())
        if not out["estimate_valid"]:
            out["expected_accuracy"] = float("nan")
        return out
