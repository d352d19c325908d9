"""Labels that arrive after the predictions: ``labels=CSV`` of ``medclf monitor`` turns the
label-free estimate into realised metrics with intervals, and says whether the estimate held.

The CSV names each image by one key column and its true class in ``label``: ``path`` (relative
to the images folder) or ``sha256`` (of the file) for a folder; ``request_id`` or ``sha256``
(the audit log's input sha256) for audit traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from medclf.errors import MedclfError

KEYS = ("path", "sha256", "request_id")
MAX_LABEL_BYTES = 256 * 2**20  # a larger file is refused before it is read


def read_labels(path: Path, classes: tuple[str, ...], most: int) -> tuple[str, dict[str, int]]:
    """(the key column, key -> class index) of a labels CSV; at most ``most`` rows."""
    import csv

    if not path.is_file():
        raise MedclfError(f"labels={path}: no such file")
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise MedclfError(f"labels={path}: larger than {MAX_LABEL_BYTES // 2**20} MiB")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        key = next((k for k in KEYS if k in fields), None)
        if key is None or "label" not in fields:
            raise MedclfError(
                f"labels={path}: needs a 'label' column and one of {', '.join(KEYS)} "
                f"(found {', '.join(fields) or 'no header'})"
            )
        labels: dict[str, int] = {}
        for n, row in enumerate(reader, start=2):
            if len(labels) >= most:
                raise MedclfError(f"labels={path}: more than monitor.max_images={most} rows")
            if row["label"] not in classes:
                raise MedclfError(
                    f"labels={path}, line {n}: '{row['label']}' is not a class of the model "
                    f"({', '.join(classes)})"
                )
            labels[row[key]] = classes.index(row["label"])
    return key, labels


def _interval(hits: np.ndarray, confidence: float, seed: int) -> dict[str, float]:
    value = float(hits.mean()) if len(hits) else float("nan")
    if len(hits) < 2 or hits.min() == hits.max():  # no spread to resample
        return {"value": value, "low": value, "high": value}
    ci = bootstrap(
        (hits.astype(np.float64),), np.mean, confidence_level=confidence,
        method="percentile", n_resamples=2000, random_state=seed,
    ).confidence_interval  # fmt: skip
    return {"value": value, "low": float(ci.low), "high": float(ci.high)}


def realised(
    probabilities: np.ndarray,
    keys: list[str | None],
    labels: dict[str, int],
    classes: tuple[str, ...],
    estimate: dict[str, Any],
    release: dict[str, Any] | None,
    confidence: float,
) -> dict[str, Any]:
    """Accuracy and per-class sensitivity on the labelled images, with percentile bootstrap
    intervals; whether the label-free ``estimate`` (its interval) held the realised accuracy;
    the release's own test accuracy beside them."""
    rows = [i for i, k in enumerate(keys) if k is not None and k in labels]
    if not rows:
        raise MedclfError("no labelled image matches a monitored one (check the key column)")
    truth = np.array([labels[keys[i]] for i in rows])  # type: ignore[index]
    predicted = probabilities[rows].argmax(axis=1)
    hits = predicted == truth
    accuracy = _interval(hits, confidence, seed=0)
    tested = ((release or {}).get("evaluation") or {}).get("metrics", {}).get("accuracy")
    return {
        "images": len(rows),
        "accuracy": accuracy,
        "sensitivity": {
            c: _interval(hits[truth == k], confidence, seed=k) if np.any(truth == k) else None
            for k, c in enumerate(classes)
        },
        "estimate_held": bool(estimate["low"] <= accuracy["value"] <= estimate["high"]),
        "release_test_accuracy": tested,
    }
