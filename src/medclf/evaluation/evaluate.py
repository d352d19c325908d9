"""``medclf evaluate``: the best checkpoint on a split of its run or on an external dataset.

The pipeline, one function a step: load (the run, its settings, the images, the predictor) ->
predict (validation, then the evaluated images, with the run's preprocessing) -> fit the
decision on validation (temperature, thresholds, conformal quantile; saved as
``calibration.json``, used by predict, serve and export) -> score every metric with a
bootstrap interval (by patient where ids exist; ``evaluation.scoring``) -> calibrate (before and
after) and measure (latency, subgroups) -> gate -> write ``RUN/eval/<name>/``: metrics.json,
predictions.csv, gates.json, figures, report.html, model_card.md.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from medclf.atomic import atomic_dir, atomic_path, dumps_json, write_text
from medclf.choices import BACKENDS
from medclf.data.folds import FOLD_COLUMN, training_rows
from medclf.data.split import metadata_columns
from medclf.decision import DecisionRecord
from medclf.errors import MedclfError
from medclf.evaluation.decision_fit import fit_decision
from medclf.evaluation.scoring import (
    calibration_summary,
    class_shares,
    conformal_summary,
    interval_values,
    tta_comparison,
    validation_gap,
)
from medclf.rundir import RunDir
from medclf.words import keys

log = logging.getLogger("medclf")


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    gates: dict[str, Any]


@dataclass
class Evaluated:
    """One set of images with labels, run through the model."""

    table: pd.DataFrame
    y: np.ndarray
    logits: np.ndarray  # as deployed: averaged over the decision record's TTA views
    images: list[np.ndarray]  # CxHxW in [0, 1], before normalization (for figures)
    logits_single: np.ndarray | None = None  # one view (set only when TTA is on)


def _target_table(split_table: pd.DataFrame, split: str | None, data_cfg: Any, external: bool):
    """(name, table) of the images to evaluate."""
    if external:
        from medclf.data.discover import DiscoverOptions, discover

        table = discover(data_cfg.path, DiscoverOptions.from_cfg(data_cfg))
        source = Path(str(data_cfg.path)).expanduser()
        name = source.stem if source.is_file() else source.name
        if split:
            if "split" not in table or split not in set(table["split"]):
                raise MedclfError(f"split={split}: data.path={data_cfg.path} has no such split")
            table = table[table["split"] == split]
            name = f"{name}-{split}"
        for col in ("patient_id", "split"):
            if col not in table:
                table[col] = ""
        return name, table.reset_index(drop=True)
    split = split or "test"
    if split not in set(split_table["split"]):
        available = ", ".join(sorted(set(split_table["split"])))
        raise MedclfError(f"split={split}: the run has no such split (available: {available})")
    return split, split_table[split_table["split"] == split].reset_index(drop=True)


def _predict(job: Job, table: pd.DataFrame, progress: bool, desc: str = "") -> Evaluated:
    """``table``'s images through the job's predictor, with its preprocessing and TTA views."""
    from medclf.data.datamodule import decode_all

    predictor = job.predictor
    desc = desc or f"reading {job.name}"
    classes = predictor.class_names
    arrays, errors = decode_all(list(table["path"]), predictor.prep, desc=desc, progress=progress)
    if errors:
        raise MedclfError(f"{len(errors)} image(s) could not be read; first: {errors[0]}")
    inputs = [predictor.prep.normalize_array(a) for a in arrays]
    logits = predictor.logits_arrays(inputs)
    single = None
    if predictor.decision.tta != "none":
        single = predictor._batched(predictor._raw_logits, inputs, 32)
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    return Evaluated(table, y, logits, arrays, single)


@dataclass
class Job:
    """What one evaluation works on, loaded and checked before any image is read."""

    run: RunDir
    cfg: Any  # the eval and data settings (evaluation.settings)
    name: str  # eval/<name>/: the split, or the external dataset's name
    table: pd.DataFrame  # the evaluated images
    split_table: pd.DataFrame  # the run's split.csv
    external: bool
    backend: str
    predictor: Any
    seed: int

    @property
    def classes(self) -> tuple[str, ...]:
        return self.predictor.class_names


def evaluate(
    run_dir: str | Path,
    split: str | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    backend: str = "torch",
) -> EvalResult:
    """load -> predict -> fit decision -> score with intervals -> calibrate -> gate -> write.
    ``backend="onnx"`` evaluates ``RUN/export/model.onnx`` as deployed: with the temperature
    and thresholds embedded in it (nothing is refitted) and results in ``eval/<name>-onnx``."""
    from medclf.evaluation.gates import judge_gates

    job = _load(run_dir, split, list(overrides or []), backend)
    evaluating_val = split == "val" and not job.external
    val = _predict_validation(job, evaluating_val, progress)
    decision = _decide(job, val)
    ev = val if (evaluating_val and val is not None) else _predict(job, job.table, progress)
    if backend == "torch":
        decision.save(job.run.calibration)  # once every evaluated image was read
    scores = _score(job, ev, decision)
    calibration = calibration_summary(ev, decision, int(job.cfg.eval.calibration_bins))
    measured = _measure(job, ev, scores)
    gates = judge_gates(
        job.cfg.eval.gates, scores.values, job.classes, on=str(job.cfg.eval.gates_on)
    )
    metrics = _record(job, ev, decision, scores, calibration, measured, gates)
    if val is not None and ev is not val:
        metrics["validation_gap"] = validation_gap(val, scores.values["accuracy"], job.name)
    shares = class_shares(
        job.split_table,
        job.name,
        ev.table["label"],
        job.classes,
        metrics["operating_point"],
        metrics["per_class"],
    )
    if shares:
        metrics["class_shares"] = shares
    decisions = [decision.decide(p, job.classes) for p in scores.probs]
    result = _write(job, metrics, scores, gates, ev, decisions)
    if job.name == "test" and not job.external and val is not None:
        _write_monitor_reference(job, val, ev, scores, decision, decisions)
    return result


def _write_monitor_reference(
    job: Job,
    val: Evaluated,
    test: Evaluated,
    scores: Scores,
    decision: DecisionRecord,
    test_decisions: list[dict[str, Any]],
) -> None:
    """What live traffic will be compared with (``monitoring.profile``): the held-out
    images' intensity features, the calibrated predictions on validation and test, and the
    embeddings of a seeded sample of the validation images (one more forward pass of at
    most ``MAX_EMBEDDING_ROWS`` images)."""
    from medclf.evaluation.calibration import apply_temperature
    from medclf.monitoring.profile import MAX_EMBEDDING_ROWS, build_profile, sampled

    val_probs = apply_temperature(val.logits, decision.temperature)
    prep = job.predictor.prep
    embedded = sampled(val.images, job.seed, MAX_EMBEDDING_ROWS)
    embeddings = job.predictor.embeddings_arrays([prep.normalize_array(a) for a in embedded])
    profile = build_profile(
        job.classes,
        job.predictor.version,
        [*val.images, *test.images],
        {"validation": val_probs, "test": scores.probs},
        {
            "validation": [decision.decide(p, job.classes) for p in val_probs],
            "test": test_decisions,
        },
        job.seed,
        embeddings,
        [*_patients(val.table), *_patients(test.table)],
    )
    write_text(job.run.monitor_reference, dumps_json(profile.to_json(), indent=None) + "\n")


def _patients(table: pd.DataFrame) -> list[str]:
    return table["patient_id"].astype(str).tolist() if "patient_id" in table else [""] * len(table)


def _load(run_dir: str | Path, split: str | None, overrides: list[str], backend: str) -> Job:
    """The run, its settings with the overrides, the images to evaluate and the predictor."""
    from medclf.evaluation.settings import evaluation_config
    from medclf.inference.predictor import OnnxPredictor, TorchPredictor
    from medclf.inference.records import recorded_file_sha256
    from medclf.registry.fetch import registered_of

    if backend not in BACKENDS:
        raise MedclfError(f"backend={backend} is not valid: expected one of {', '.join(BACKENDS)}")
    # an ONNX evaluation needs no weights: a registered version's release folder has none
    run = RunDir.open(run_dir, need_weights=backend == "torch")
    if not run.split.is_file():
        raise MedclfError(f"{run_dir}: no split.csv; re-run 'medclf train'")
    cfg = evaluation_config(run.config, overrides)
    external = "data.path" in keys(overrides)
    split_table = pd.read_csv(run.split, dtype=str, keep_default_na=False)
    name, table = _target_table(split_table, split, cfg.data, external)
    if table.empty:
        raise MedclfError(f"{name}: no images to evaluate; check split= or data.path=")
    if backend == "onnx":
        onnx_file = run.export_dir / "model.onnx"
        if not onnx_file.is_file():
            raise MedclfError(
                f"{run_dir}: no export/model.onnx; run 'medclf export model={run_dir}' first"
            )
        predictor = OnnxPredictor(onnx_file, recorded_file_sha256(onnx_file))
        predictor.registered = registered_of(run.root)  # None unless fetched from models:/
        name = f"{name}-onnx"
    else:
        predictor = TorchPredictor(run.root)
    unknown = sorted(set(table["label"]) - set(predictor.class_names))
    if unknown:
        raise MedclfError(
            f"{name}: labels {unknown} are not classes of the model "
            f"({', '.join(predictor.class_names)}); map them with data.class_map={{old: new}} or "
            "evaluate a model trained on them"
        )
    seed = int(cfg.get("seed", 0) or 0)
    return Job(run, cfg, name, table, split_table, external, backend, predictor, seed)


def _predict_validation(job: Job, evaluating_val: bool, progress: bool) -> Evaluated | None:
    """The validation split through the model: what the decision is fitted on (an ONNX file
    keeps its own decision, so it reads validation only when validation is evaluated)."""
    if job.backend == "torch":
        # the views are part of what is fitted: validation runs with them too
        tta = str(job.cfg.eval.tta)
        job.predictor.decision = dataclasses.replace(job.predictor.decision, tta=tta)
    elif not evaluating_val:
        return None
    rows = job.split_table[job.split_table["split"] == "val"].reset_index(drop=True)
    if not len(rows):
        return None
    if FOLD_COLUMN in rows:
        return _predict_out_of_fold(job, rows, progress)
    return _predict(job, rows, progress, "reading val")


def _predict_out_of_fold(job: Job, rows: pd.DataFrame, progress: bool) -> Evaluated:
    """A fold ensemble's validation: each image predicted by the one fold network that did
    not train on it (``cv_fold``), so the decision is fitted on honest out-of-fold
    predictions. An exported graph holds only the averaged output: refused."""
    model = getattr(job.predictor, "model", None)
    if not hasattr(model, "single_fold"):
        raise MedclfError(
            f"{job.run.root}: a fold ensemble's validation images were each trained on by "
            "the other folds; evaluate its validation split with backend=torch (the "
            "out-of-fold predictions), or another split with backend=onnx"
        )
    parts = []
    for k, fold_rows in rows.groupby(rows[FOLD_COLUMN].astype(int), sort=True):
        with model.single_fold(int(k) - 1):
            parts.append(_predict(job, fold_rows, progress, f"reading val (fold {k})"))
    return Evaluated(
        pd.concat([p.table for p in parts], ignore_index=True),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.logits for p in parts]),
        [image for p in parts for image in p.images],
        None
        if parts[0].logits_single is None
        else np.concatenate([p.logits_single for p in parts]),
    )


def _decide(job: Job, val: Evaluated | None) -> DecisionRecord:
    """Fit temperature, thresholds and conformal quantile on validation (torch), or keep the
    record embedded in the ONNX file."""
    if job.backend == "onnx":
        return job.predictor.decision
    decision = fit_decision(val, job.classes, job.cfg.eval, job.predictor.version)
    job.predictor.decision = decision
    return decision


@dataclass
class Scores:
    suite: Any  # evaluation.metrics.MetricSuite
    probs: np.ndarray  # calibrated
    values: dict[str, dict[str, Any]]  # flat metric name -> value and interval
    ci_info: dict[str, Any]
    support: dict[str, int]


def _score(job: Job, ev: Evaluated, decision: DecisionRecord) -> Scores:
    """Calibrated probabilities and every metric with its bootstrap interval."""
    from medclf.data.ordinal import class_grades
    from medclf.evaluation.calibration import apply_temperature
    from medclf.evaluation.metrics import MetricSuite

    classes = job.classes
    probs = apply_temperature(ev.logits, decision.temperature)
    positive = classes.index(decision.positive_class) if decision.positive_class else None
    suite = MetricSuite(
        classes,
        positive=positive,
        thresholds={classes.index(c): t for c, t in decision.thresholds.items()},
        calibration_bins=int(job.cfg.eval.calibration_bins),
        grades=class_grades(classes, OmegaConf.select(job.cfg, "data.ordinal", default="auto")),
    )
    values, ci_info = interval_values(suite, ev, probs, job.cfg.eval, job.seed)
    return Scores(suite, probs, values, ci_info, suite.supports(ev.y))


def _measure(job: Job, ev: Evaluated, scores: Scores) -> dict[str, Any]:
    """Latency, the training split's imbalance and subgroup metrics; latency and imbalance
    also become gateable values."""
    from medclf.evaluation.latency import measure_latency
    from medclf.evaluation.subgroups import subgroup_metrics

    latency = measure_latency(job.predictor, ev, runs=int(job.cfg.eval.latency_runs))
    for key in ("latency_p50_ms", "latency_p95_ms", "throughput_images_per_s"):
        if latency.get(key) is not None:
            scores.values[key] = {"value": float(latency[key])}
    split_table = job.split_table
    train_counts = training_rows(split_table)["label"].value_counts()
    imbalance = float(train_counts.max() / train_counts.min()) if len(train_counts) else None
    if imbalance is not None:
        scores.values["train_imbalance_ratio"] = {"value": imbalance}
    meta_cols = [c for c in metadata_columns(ev.table) if not c.startswith("_")]
    subgroups = subgroup_metrics(
        ev.table, ev.y, scores.probs, job.classes, meta_cols, int(job.cfg.eval.age_band_years)
    )
    return {
        "latency": latency,
        "train_class_counts": {k: int(v) for k, v in train_counts.items()},
        "train_imbalance_ratio": imbalance,
        "subgroups": subgroups,
    }


def _record(job, ev, decision, scores: Scores, calibration, measured, gates) -> dict[str, Any]:
    """metrics.json: what was evaluated, by which model, and every result in named sections."""
    from medclf.evaluation.metrics import confusion

    classes = job.classes
    named = scores.suite.named(scores.values)
    for c, n in scores.support.items():
        named["per_class"][c]["support"] = {"value": float(n)}
    named["operating_point"].update(
        rule=decision.rule,
        thresholds=decision.thresholds,
        positive_class=decision.positive_class,
        fitted_on=decision.fitted_on,
    )
    patients = ev.table["patient_id"].astype(str).replace("nan", "")
    source = str(job.cfg.data.path) if job.external else f"{job.run.split} (split={job.name})"
    return {
        "run": str(job.run.root),
        "evaluated": {
            "name": job.name,
            "source": source,
            "external": job.external,
            "images": len(ev.y),
            "patients": int(patients[patients != ""].nunique()),
            "class_counts": scores.support,
        },
        "model": job.predictor.info(),
        "task": {
            "classes": list(classes),
            "binary": len(classes) == 2,
            "positive_class": decision.positive_class,
        },
        "confidence_intervals": scores.ci_info,
        **named,
        "calibration": calibration,
        "confusion_matrix": confusion(ev.y, scores.probs.argmax(axis=1), len(classes)).tolist(),
        **measured,
        "gates": {"passed": gates["passed"], "failed": gates["failed"]},
        "tta": tta_comparison(scores.suite, ev, decision, job.cfg.eval, job.seed),
        "conformal": conformal_summary(ev, scores.probs, decision, job.cfg.eval, job.seed),
    }


def _write(job: Job, metrics, scores: Scores, gates, ev, decisions) -> EvalResult:
    """Every file in ``eval/<name>/``, built in a staging folder and renamed: a killed
    evaluation never leaves a folder that looks complete (the next command sweeps it)."""
    from medclf.evaluation.outputs import write_outputs

    out = job.run.eval_dir(job.name)
    with atomic_dir(out) as staging:
        write_outputs(
            job.run,
            staging,
            metrics,
            scores.values,
            gates,
            ev,
            scores.probs,
            decisions,
            job.predictor,
            job.cfg.eval,
        )
    if job.name == "test" and not job.external:
        # the run's card describes its checkpoint on its own test split
        with atomic_path(job.run.model_card) as tmp:
            shutil.copyfile(out / "model_card.md", tmp)
    return EvalResult(out_dir=out, metrics=metrics, gates=gates)
