"""Evidently's own drift reports, rendered from the data medclf's monitor compared.

An optional extra (``pip install 'medclf[evidently]'``): teams that already read Evidently
dashboards get its column-drift report of the same reference and new images next to
medclf's. medclf's alerts and exit code stay its own (``monitoring.monitor``): Evidently
tests each column at its own defaults (KS p < 0.05 for numbers, no multiple-comparison
correction), which would false-alarm on every small window; its verdicts are recorded in
``monitor.json`` for reading, not for alerting.

alibi-detect, the other drift library these pipelines use, is not offered: its licence
(BSL 1.1) is not open source for production use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from medclf.errors import MedclfError
from medclf.monitoring.features import INTENSITY_FEATURES

FILES = {"inputs": "evidently_inputs.html", "predictions": "evidently_predictions.html"}


def wanted(mode: str) -> bool:
    """Whether to render: ``auto`` when Evidently is installed; ``always`` insists (one
    error line before any image is read when it is missing); ``never`` does not."""
    installed = importlib.util.find_spec("evidently") is not None
    if mode == "always" and not installed:
        raise MedclfError(
            "monitor.evidently=always: Evidently is not installed; "
            "pip install 'medclf[evidently]' (or monitor.evidently=auto)"
        )
    return mode != "never" and installed


def _predictions(probabilities: np.ndarray, classes: tuple[str, ...]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "predicted_class": [classes[k] for k in probabilities.argmax(axis=1)],
            "confidence": probabilities.max(axis=1),
        }
    )


def render(reference: Any, current: Any, folder: Path) -> dict[str, Any]:
    """Evidently's data-drift preset on the intensity features and on the predictions
    (class, confidence), as HTML files in ``folder``; returns its verdicts per column."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    recorded = current.features[~np.isnan(current.features).any(axis=1)]
    held_out = np.concatenate(list(reference.probabilities.values()))
    tables = {
        "predictions": (
            _predictions(held_out, reference.classes),
            _predictions(current.probabilities, reference.classes),
            DataDefinition(
                numerical_columns=["confidence"], categorical_columns=["predicted_class"]
            ),
        )
    }
    if len(recorded) >= 2:  # a raw tensor's audit rows hold no intensity features
        columns = list(INTENSITY_FEATURES)
        tables["inputs"] = (
            pd.DataFrame(reference.intensity, columns=columns),
            pd.DataFrame(recorded, columns=columns),
            DataDefinition(numerical_columns=columns),
        )
    verdicts: dict[str, Any] = {}
    for name, (ref, cur, definition) in tables.items():
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        snapshot.save_html(str(folder / FILES[name]))
        verdicts[name] = {"file": FILES[name], **_verdicts(snapshot.dict())}
    return verdicts


def _verdicts(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The drifted-columns count and each column's p-value or distance with its method."""
    out: dict[str, Any] = {"columns": {}}
    for metric in snapshot.get("metrics", []):
        config, value = metric.get("config", {}), metric.get("value")
        if config.get("type", "").endswith("DriftedColumnsCount") and isinstance(value, dict):
            out["drifted_columns"] = int(value.get("count", 0))
            out["drifted_share"] = float(value.get("share", 0.0))
        elif config.get("type", "").endswith("ValueDrift") and value is not None:
            out["columns"][config.get("column")] = {
                "method": config.get("method"),
                "value": float(value),
                "threshold": config.get("threshold"),
            }
    return out
