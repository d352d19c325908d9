"""The release record an export carries: what the model was trained on, how it did on its test
split and whether it passed its gates, and what made the file. Written into ``metadata.json``
and embedded in the ONNX file (``medclf.release``), so a file found on its own still says what
it is; the registry tags a model version from the same record."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from medclf.rundir import RunDir
from medclf.version import __version__

# the test metrics a release states, each with its interval
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")


def training_data(run: RunDir) -> dict[str, Any]:
    """The data fingerprint (sha256 of the run's split.csv: every image's hash, label and
    split) and the image count of each class in each split."""
    table = pd.read_csv(run.split, dtype=str, keep_default_na=False)
    counts = table.groupby(["split", "label"]).size()
    return {
        "split_csv_sha256": hashlib.file_digest(run.split.open("rb"), "sha256").hexdigest(),
        "class_counts": {
            split: {label: int(n) for label, n in counts[split].items()}
            for split in ("train", "val", "test")
            if split in counts.index.get_level_values(0)
        },
    }


def test_evaluation(run: RunDir, model_version: str) -> dict[str, Any] | None:
    """The headline metrics with intervals and the gates of the run's latest test-split
    evaluation, when one exists for these weights (an evaluation of an earlier best.ckpt does
    not describe this file)."""
    folder = run.eval_dir("test")
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        gates = json.loads((folder / "gates.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (metrics.get("model") or {}).get("version") != model_version:
        return None
    overall = metrics.get("overall") or {}
    return {
        "split": "test",
        "images": (metrics.get("evaluated") or {}).get("images"),
        "metrics": {
            k: {f: overall[k].get(f) for f in ("value", "ci_low", "ci_high")}
            for k in HEADLINE
            if isinstance(overall.get(k), dict)
        },
        "ci_level": (metrics.get("confidence_intervals") or {}).get("level"),
        "gates": {"passed": bool(gates.get("passed")), "failed": list(gates.get("failed") or [])},
    }


def release_record(run: RunDir, model_version: str) -> dict[str, Any]:
    import onnx
    import onnxruntime

    return {
        "training_data": training_data(run),
        "evaluation": test_evaluation(run, model_version),
        "versions": {
            "medclf": __version__,
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
        },
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
