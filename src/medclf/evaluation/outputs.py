"""Everything ``evaluate`` writes into ``RUN/eval/<name>/``, each file atomically."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.atomic import atomic_path, write_json

log = logging.getLogger("medclf")
FIGURES = {
    "confusion": "confusion_matrix.png",
    "roc_pr": "roc_pr_curves.png",
    "reliability": "reliability.png",
    "per_class": "per_class_metrics.png",
    "training": "training_curves.png",
    "top_losses": "top_losses.png",
    "gradcam": "gradcam.png",
}


def predictions_frame(ev, probs, decisions, classes) -> pd.DataFrame:
    y_pred = probs.argmax(axis=1)
    return pd.DataFrame(
        {
            "path": ev.table["path"],
            "patient_id": ev.table["patient_id"],
            "true": ev.table["label"],
            "predicted": [classes[k] for k in y_pred],
            "decision": [d["label"] or "" for d in decisions],
            "flagged": ["|".join(d["flagged"]) for d in decisions],
            "prediction_set": ["|".join(d.get("prediction_set", [])) for d in decisions],
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)},
            "correct": ev.y == y_pred,
        }
    )


def _top_losses(ev, probs, classes, limit: int) -> list[tuple[np.ndarray, str]]:
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != ev.y)
    order = wrong[np.argsort(-probs[wrong, y_pred[wrong]], kind="stable")][:limit]
    return [
        (
            ev.images[i],
            f"{Path(str(ev.table['path'].iloc[i])).name[:22]}\n"
            f"true {classes[ev.y[i]]} / pred {classes[y_pred[i]]}\n"
            f"p={probs[i, y_pred[i]]:.2f}, loss={-np.log(max(probs[i, ev.y[i]], 1e-12)):.2f}",
        )
        for i in order
    ]


def _gradcam_tiles(ev, probs, predictor, classes, per_class: int):
    from medclf.inference.explain import gradcam_maps, overlay

    y_pred = probs.argmax(axis=1)
    chosen: list[int] = []
    for k in range(len(classes)):
        rows = np.flatnonzero(ev.y == k)
        chosen += list(rows[np.argsort(-probs[rows, k], kind="stable")][:per_class])
    if not chosen:
        return []
    inputs = np.stack([predictor.prep.normalize_array(ev.images[i]) for i in chosen])
    maps = gradcam_maps(predictor.model, inputs, [y_pred[i] for i in chosen])
    return [
        (
            overlay(ev.images[i], heat),
            f"true {classes[ev.y[i]]}\npred {classes[y_pred[i]]} p={probs[i, y_pred[i]]:.2f}",
        )
        for i, heat in zip(chosen, maps, strict=True)
    ]


def write_outputs(
    run, out: Path, metrics, values, gates, ev, probs, decisions, predictor, ev_cfg
) -> dict[str, Path]:
    from medclf.curves import plot_training_curves
    from medclf.evaluation import plots
    from medclf.evaluation.model_card import write_model_card
    from medclf.evaluation.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    classes = predictor.class_names
    write_json(out / "metrics.json", metrics)
    write_json(out / "gates.json", gates)
    with atomic_path(out / "predictions.csv") as tmp:
        predictions_frame(ev, probs, decisions, classes).to_csv(
            tmp, index=False, float_format="%.8f"
        )
    figures: dict[str, Path] = {}
    acc = values["accuracy"]["value"]
    figures["confusion"] = plots.plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        classes,
        out / FIGURES["confusion"],
        title=f"{run.name} - {metrics['evaluated']['name']} (accuracy {acc:.3f})",
    )
    figures["roc_pr"] = plots.plot_roc_pr(ev.y, probs, classes, out / FIGURES["roc_pr"], values)
    figures["reliability"] = plots.plot_reliability(
        metrics["calibration"], out / FIGURES["reliability"]
    )
    figures["per_class"] = plots.plot_per_class_bars(values, classes, out / FIGURES["per_class"])
    if run.curves_png.is_file() or plot_training_curves(run.metrics_csv, run.curves_png):
        shutil.copyfile(run.curves_png, out / FIGURES["training"])
        figures["training"] = out / FIGURES["training"]
    losses = _top_losses(ev, probs, classes, int(ev_cfg.top_losses))
    if losses:
        figures["top_losses"] = plots.plot_gallery(
            losses, out / FIGURES["top_losses"], "most confident errors"
        )
    if int(ev_cfg.gradcam_per_class) > 0 and hasattr(predictor, "model"):
        try:
            tiles = _gradcam_tiles(ev, probs, predictor, classes, int(ev_cfg.gradcam_per_class))
        except (ValueError, RuntimeError) as exc:  # an architecture Grad-CAM cannot hook
            log.warning("Grad-CAM skipped: %s", exc)
            tiles = []
        if tiles:
            figures["gradcam"] = plots.plot_gallery(
                tiles,
                out / FIGURES["gradcam"],
                "Grad-CAM, predicted class",
                cols=max(2, min(6, 2 * int(ev_cfg.gradcam_per_class))),
            )
    write_model_card(run, out / "model_card.md", metrics, values, gates)
    write_report(out / "report.html", run, metrics, values, gates, figures)
    return figures
