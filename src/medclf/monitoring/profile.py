"""The reference profile: what the model met before release, kept to compare live traffic
with. Written by the test evaluation of a run's weights (``RUN/monitor_reference.json``) and
embedded in their ONNX export, so an ONNX file or a registered version carries its own.

It holds, for a seeded sample of at most ``MAX_ROWS`` held-out images each:
- the intensity features (``monitoring.features``) of validation and test images, after the
  run's window and resize: input drift is measured against them;
- the calibrated probabilities on validation and on test: prediction drift (class shares,
  confidence) and the label-free estimate's baseline;
- the share of "refer" decisions (a conformal set of more than one class) on each.

A profile is read from files other people hand over: it is parsed as plain JSON, every array
is checked for its shape and finiteness, and sizes are bounded before use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medclf.errors import MedclfError
from medclf.monitoring.features import INTENSITY_FEATURES

PROFILE_VERSION = 1
MAX_ROWS = 2000  # per sample: ~40 bytes per feature row, ~10 per class per probability row
MAX_PROFILE_BYTES = 16 * 2**20  # a larger file is refused before it is parsed
SAMPLES = ("validation", "test")


@dataclass(frozen=True)
class ReferenceProfile:
    classes: tuple[str, ...]
    model_version: str
    intensity: np.ndarray  # rows x INTENSITY_FEATURES, validation and test images
    probabilities: dict[str, np.ndarray]  # sample -> rows x classes, calibrated
    refer_share: dict[str, float | None]  # sample -> share of "refer" decisions

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PROFILE_VERSION,
            "classes": list(self.classes),
            "model_version": self.model_version,
            "features": list(INTENSITY_FEATURES),
            "intensity": np.round(self.intensity, 6).tolist(),
            "probabilities": {k: np.round(v, 6).tolist() for k, v in self.probabilities.items()},
            "refer_share": self.refer_share,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ReferenceProfile:
        """The profile in ``data`` (parsed JSON from ``where``), checked."""
        try:
            if data.get("version") != PROFILE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {PROFILE_VERSION}")
            classes = tuple(str(c) for c in data["classes"])
            if list(data["features"]) != list(INTENSITY_FEATURES):
                raise ValueError(f"features {data['features']}, expected {INTENSITY_FEATURES}")
            intensity = _rows(data["intensity"], len(INTENSITY_FEATURES), "intensity")
            probabilities = {
                s: _rows(data["probabilities"][s], len(classes), s)
                for s in SAMPLES
                if s in data["probabilities"]
            }
            refer = {s: data["refer_share"].get(s) for s in SAMPLES}
            if "validation" not in probabilities:
                raise ValueError("no validation probabilities")
            return cls(classes, str(data["model_version"]), intensity, probabilities, refer)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MedclfError(
                f"{where}: not a valid monitoring reference ({exc}); evaluate the run on its "
                "test split again (medclf evaluate model=RUN) and export it again"
            ) from None


def _rows(values: Any, width: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width or not 1 <= len(array) <= MAX_ROWS:
        raise ValueError(f"{name}: expected 1-{MAX_ROWS} rows of {width} numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values that are not finite numbers")
    return array


def sampled(rows: np.ndarray, seed: int) -> np.ndarray:
    """At most ``MAX_ROWS`` of ``rows``, a seeded sample in their original order."""
    if len(rows) <= MAX_ROWS:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), MAX_ROWS, replace=False))
    return rows[keep]


def read_profile(path: Path) -> ReferenceProfile:
    size = path.stat().st_size
    if size > MAX_PROFILE_BYTES:
        raise MedclfError(f"{path}: {size} bytes, more than a monitoring reference can hold")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MedclfError(f"{path}: not a text file ({exc})") from None
    return profile_from_text(text, str(path))


def profile_from_text(text: str, where: str) -> ReferenceProfile:
    """A profile from JSON text: a run's file, or the string embedded in an export."""
    if len(text) > MAX_PROFILE_BYTES:
        raise MedclfError(f"{where}: more than a monitoring reference can hold")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedclfError(f"{where}: the monitoring reference is not JSON ({exc})") from None
    return ReferenceProfile.from_json(data, where)


def refer_share(decisions: list[dict[str, Any]]) -> float | None:
    """The share of "refer" decisions; None when the decision record makes none (no
    conformal set)."""
    made = [d["refer"] for d in decisions if "refer" in d]
    return float(np.mean(made)) if made else None


def build_profile(
    classes: tuple[str, ...],
    model_version: str,
    images: list[np.ndarray],
    probabilities: dict[str, np.ndarray],
    decisions: dict[str, list[dict[str, Any]]],
    seed: int,
) -> ReferenceProfile:
    """The profile of held-out ``images`` (C x H x W in [0, 1], before normalization) and
    the calibrated ``probabilities`` and ``decisions`` per sample."""
    from medclf.monitoring.features import intensity_features

    features = np.stack([intensity_features(a) for a in images])
    return ReferenceProfile(
        classes=tuple(classes),
        model_version=model_version,
        intensity=sampled(features, seed),
        probabilities={
            s: sampled(np.asarray(p, np.float64), seed) for s, p in probabilities.items()
        },
        refer_share={s: refer_share(d) for s, d in decisions.items()},
    )
