"""``evaluate(run, split)``: the best checkpoint on one split of the run's saved manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.atomic import atomic_path, write_json
from medclf.data.split import SPLIT_COLUMNS
from medclf.errors import MedclfError
from medclf.rundir import RunDir


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]


def evaluate(run_dir: str | Path, split: str = "test", progress: bool = True) -> EvalResult:
    from medclf.data.datamodule import decode_all
    from medclf.evaluation.metrics import classification_metrics
    from medclf.evaluation.plots import plot_confusion_matrix
    from medclf.serving.predictor import TorchPredictor

    run = RunDir.open(run_dir)
    if not run.split.is_file():
        raise MedclfError(f"run={run_dir}: no split.csv; re-run 'medclf train'")
    table = pd.read_csv(run.split, dtype=str, keep_default_na=False)[SPLIT_COLUMNS]
    if split not in set(table["split"]):
        available = ", ".join(sorted(set(table["split"])))
        raise MedclfError(f"split={split}: the run has no such split (available: {available})")
    part = table[table["split"] == split].reset_index(drop=True)
    predictor = TorchPredictor(run.root)
    classes = predictor.class_names
    unknown = sorted(set(part["label"]) - set(classes))
    if unknown:
        raise MedclfError(f"split={split}: labels {unknown} are not among the model's classes")

    arrays, errors = decode_all(
        list(part["path"]), predictor.prep, desc=f"reading {split}", progress=progress
    )
    if errors:
        raise MedclfError(errors[0])
    inputs = [predictor.prep.normalize_array(a) for a in arrays]
    probs = predictor.predict_arrays(inputs)
    y_true = part["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    y_pred = probs.argmax(axis=1)
    metrics = {
        "run": str(run.root),
        "split": split,
        "model": predictor.info(),
        **classification_metrics(y_true, y_pred, classes),
    }

    out = run.eval_dir(split)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    preds = pd.DataFrame(
        {
            "path": part["path"],
            "patient_id": part["patient_id"],
            "true": part["label"],
            "predicted": [classes[k] for k in y_pred],
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)},
            "correct": (y_true == y_pred),
        }
    )
    with atomic_path(out / "predictions.csv") as tmp:
        preds.to_csv(tmp, index=False, float_format="%.8f")
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        classes,
        out / "confusion_matrix.png",
        title=f"{run.name} - {split} (accuracy {metrics['accuracy']:.3f})",
    )
    return EvalResult(out_dir=out, metrics=metrics)
