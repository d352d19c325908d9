"""The reference profile: what the model met before release, kept to compare live traffic
with. Written by the test evaluation of a run's weights (``RUN/monitor_reference.json``) and
embedded in their ONNX export, so an ONNX file or a registered version carries its own.

It holds, for a seeded sample of at most ``MAX_ROWS`` held-out images each:
- the intensity features (``monitoring.features``) of validation and test images, after the
  run's window and resize: input drift is measured against them;
- the calibrated probabilities on validation and on test: prediction drift (class shares,
  confidence) and the label-free estimate's baseline;
- the share of "refer" decisions (a conformal set of more than one class) on each;
- the monitoring embeddings (``medclf.embedding``) of at most ``MAX_EMBEDDING_ROWS``
  validation images: input drift in the model's own features (MMD) is measured against them;
- the design effect of each intensity feature and of the predicted class among these images
  (``clustered.design_effect``: several slices of one patient are not independent images). The
  tests count both samples as that many times fewer images, assuming new traffic comes in
  patients of similar size; without it, the KS test on the demo model's phantoms (1.7
  slices per patient) false-alarmed on 4 of 20 unshifted sets.

A profile is read from files other people hand over: it is parsed as plain JSON, every array
is checked for its shape and finiteness, and sizes are bounded before use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf import embedding
from medclf.errors import MedclfError
from medclf.monitoring.features import INTENSITY_FEATURES

PROFILE_VERSION = 1
MAX_ROWS = 2000  # per sample: ~40 bytes per feature row, ~10 per class per probability row
MAX_PROFILE_BYTES = 16 * 2**20  # a larger file is refused before it is parsed
SAMPLES = ("validation", "test")
# the MMD's kernel matrix grows with the square of reference + current rows: 500 + 500 rows
# of 32 numbers and 500 permutations took 0.12-0.16 s on this project's 2-core machine
MAX_EMBEDDING_ROWS = 500


@dataclass(frozen=True)
class ReferenceProfile:
    classes: tuple[str, ...]
    model_version: str
    intensity: np.ndarray  # rows x INTENSITY_FEATURES, validation and test images
    probabilities: dict[str, np.ndarray]  # sample -> rows x classes, calibrated
    refer_share: dict[str, float | None]  # sample -> share of "refer" decisions
    # validation images x embedding.SIZE; None in a reference written before embeddings
    embeddings: np.ndarray | None = None
    # feature name (and "class") -> design effect; missing ones are 1 (independent images)
    design_effects: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "version": PROFILE_VERSION,
            "classes": list(self.classes),
            "model_version": self.model_version,
            "features": list(INTENSITY_FEATURES),
            "intensity": np.round(self.intensity, 6).tolist(),
            "probabilities": {k: np.round(v, 6).tolist() for k, v in self.probabilities.items()},
            "refer_share": self.refer_share,
        }
        if self.design_effects:
            out["design_effect"] = {k: round(v, 6) for k, v in self.design_effects.items()}
        if self.embeddings is not None:
            out["embedding"] = {
                "size": embedding.SIZE,
                "seed": embedding.PROJECTION_SEED,
                "validation": np.round(self.embeddings, 5).tolist(),
            }
        return out

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
            embeddings = _embeddings(data.get("embedding"))
            effects = _design_effects(data.get("design_effect") or {})
            version = str(data["model_version"])
            return cls(classes, version, intensity, probabilities, refer, embeddings, effects)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MedclfError(
                f"{where}: not a valid monitoring reference ({exc}); evaluate the run on its "
                "test split again (medclf evaluate model=RUN) and export it again"
            ) from None


def _design_effects(record: Any) -> dict[str, float]:
    known = {*INTENSITY_FEATURES, "class"}
    effects = {str(k): float(v) for k, v in record.items()}
    if not set(effects) <= known or not all(1.0 <= v <= MAX_ROWS for v in effects.values()):
        raise ValueError(f"design_effect: expected numbers from 1 for {sorted(known)}")
    return effects


def _embeddings(record: Any) -> np.ndarray | None:
    if record is None:
        return None
    if record.get("size") != embedding.SIZE or record.get("seed") != embedding.PROJECTION_SEED:
        raise ValueError(
            f"embedding of size {record.get('size')} and seed {record.get('seed')}, expected "
            f"{embedding.SIZE} and {embedding.PROJECTION_SEED}"
        )
    return _rows(record["validation"], embedding.SIZE, "embedding", MAX_EMBEDDING_ROWS)


def _rows(values: Any, width: int, name: str, most: int = MAX_ROWS) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width or not 1 <= len(array) <= most:
        raise ValueError(f"{name}: expected 1-{most} rows of {width} numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values that are not finite numbers")
    return array


def sampled(rows: Any, seed: int, most: int = MAX_ROWS) -> Any:
    """At most ``most`` of ``rows`` (an array or a list), a seeded sample in their original
    order."""
    if len(rows) <= most:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), most, replace=False))
    return rows[keep] if isinstance(rows, np.ndarray) else [rows[i] for i in keep]


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
    embeddings: np.ndarray | None = None,
    patients: list[str] | None = None,
) -> ReferenceProfile:
    """The profile of held-out ``images`` (C x H x W in [0, 1], before normalization), the
    calibrated ``probabilities`` and ``decisions`` per sample, the validation images'
    ``embeddings`` (already sampled: at most ``MAX_EMBEDDING_ROWS``) and the images'
    ``patients`` (one id per image, in the order of ``images`` and of the samples'
    probabilities; an empty id is a patient of its own)."""
    from medclf.monitoring.features import intensity_features

    features = np.stack([intensity_features(a) for a in images])
    held_out = np.concatenate([np.asarray(p) for p in probabilities.values()])
    return ReferenceProfile(
        classes=tuple(classes),
        model_version=model_version,
        intensity=sampled(features, seed),
        probabilities={
            s: sampled(np.asarray(p, np.float64), seed) for s, p in probabilities.items()
        },
        refer_share={s: refer_share(d) for s, d in decisions.items()},
        embeddings=None if embeddings is None else np.asarray(embeddings, np.float64),
        design_effects=_measured_design_effects(features, held_out, patients),
    )


def _measured_design_effects(
    features: np.ndarray, probabilities: np.ndarray, patients: list[str] | None
) -> dict[str, float]:
    """Per intensity feature, and for the predicted class (the mean over classes of its
    indicator's), among the profiled images grouped by patient."""
    from medclf.clustered import design_effect

    if not patients or len(patients) != len(features) or len(probabilities) != len(features):
        return {}
    groups = np.array([p or f"image-{i}" for i, p in enumerate(patients)])
    effects = {n: design_effect(features[:, j], groups) for j, n in enumerate(INTENSITY_FEATURES)}
    predicted = probabilities.argmax(axis=1)
    indicators = [predicted == k for k in range(probabilities.shape[1])]
    effects["class"] = float(np.mean([design_effect(i, groups) for i in indicators if i.any()]))
    return effects
