"""``medclf evaluate``: the best checkpoint on a split of its run or on an external dataset.

Order of work: read the images with the run's preprocessing -> fit temperature and operating
thresholds on the run's validation split (saved as ``calibration.json``, used by predict, serve
and export) -> calibrated probabilities on the evaluated images -> every metric with a
bootstrap interval (by patient where ids exist) -> calibration before/after, subgroups,
latency -> gates -> files in ``RUN/eval/<name>/``: metrics.json, predictions.csv, gates.json,
figures, report.html, model_card.md.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.atomic import atomic_dir, atomic_path
from medclf.choices import BACKENDS
from medclf.data.split import metadata_columns
from medclf.decision import DecisionRecord
from medclf.errors import MedclfError
from medclf.rundir import RunDir
from medclf.words import keys

log = logging.getLogger("medclf")
# Class names that mean "no finding"; the other class of a binary task is the positive one.
NEGATIVE_NAMES = re.compile(
    r"^(normal|negative|healthy|benign|control|none|no|no[_\-. ].+|non[_\-. ].+|nofinding)$", re.I
)


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


def _positive_class(classes: tuple[str, ...], wanted: str | None) -> int | None:
    if len(classes) != 2:
        if wanted:
            raise MedclfError("eval.positive_class applies to binary tasks only")
        return None
    if wanted:
        if wanted not in classes:
            raise MedclfError(f"eval.positive_class={wanted}: not one of {list(classes)}")
        return classes.index(wanted)
    negatives = [i for i, c in enumerate(classes) if NEGATIVE_NAMES.match(c)]
    return 1 - negatives[0] if len(negatives) == 1 else 1


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


def _run_model(predictor, table: pd.DataFrame, desc: str, progress: bool) -> Evaluated:
    from medclf.data.datamodule import decode_all

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


def fit_decision(
    val: Evaluated | None, classes: tuple[str, ...], ev_cfg: Any, version: str
) -> DecisionRecord:
    """Temperature (NLL on validation) then thresholds on the calibrated validation probs."""
    from medclf.evaluation.calibration import apply_temperature, fit_temperature
    from medclf.evaluation.thresholds import choose_threshold, parse_rule

    rule = parse_rule(ev_cfg.threshold)
    positive = _positive_class(classes, ev_cfg.positive_class)
    if val is None or len(val.y) == 0:
        log.warning("no validation images: temperature 1 and argmax decisions")
        return DecisionRecord(positive_class=None if positive is None else classes[positive])
    from medclf.conformal import fit_lac

    temperature = fit_temperature(val.logits, val.y) if ev_cfg.temperature_scaling else 1.0
    probs = apply_temperature(val.logits, temperature)
    alpha = ev_cfg.get("conformal_alpha")
    conformal = fit_lac(probs, val.y, float(alpha)).to_dict() if alpha is not None else {}
    thresholds: dict[str, float] = {}
    for i in [positive] if positive is not None else range(len(classes)):
        try:
            point = choose_threshold(val.y == i, probs[:, i], rule)
        except MedclfError:
            log.warning(
                "class %s: validation lacks positives or negatives; no threshold", classes[i]
            )
            continue
        thresholds[classes[i]] = point.threshold
    return DecisionRecord(
        temperature=temperature,
        rule=str(rule),
        thresholds=thresholds,
        positive_class=None if positive is None else classes[positive],
        fitted_on={"split": "val", "images": len(val.y), "model_version": version},
        tta=str(ev_cfg.get("tta", "none")),
        conformal=conformal,
    )


def _interval_values(
    suite, ev: Evaluated, probs: np.ndarray, ev_cfg: Any, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from medclf.evaluation.bootstrap import bootstrap_intervals, resampling_units

    keys = suite.keys()
    point = suite.compute(ev.y, probs)
    values = {k: {"value": float(v)} for k, v in zip(keys, point, strict=True)}
    units = resampling_units(ev.table["patient_id"].astype(str).tolist(), len(ev.y))
    info = {
        "level": float(ev_cfg.ci_level),
        "method": str(ev_cfg.ci_method),
        "resamples": int(ev_cfg.n_bootstrap),
        "unit": "patient" if len(units) < len(ev.y) else "image",
        "units": len(units),
        "seed": seed,
    }
    if int(ev_cfg.n_bootstrap) > 0 and len(units) >= 2:
        intervals = bootstrap_intervals(
            lambda rows: suite.compute(ev.y[rows], probs[rows]),
            units,
            n_resamples=int(ev_cfg.n_bootstrap),
            level=float(ev_cfg.ci_level),
            method=str(ev_cfg.ci_method),
            seed=seed,
        )
        for key, ci in zip(keys, intervals, strict=True):
            values[key].update(ci_low=ci.low, ci_high=ci.high, ci_method=ci.method)
    return values, info


TTA_HEADLINE = ("accuracy", "macro_auc")


def _tta_comparison(suite, ev: Evaluated, decision, ev_cfg: Any, seed: int) -> dict[str, Any]:
    """Headline metrics with intervals with and without the TTA views (same images, same
    temperature), so the gain of ``eval.tta`` is measured, not assumed."""
    from medclf.evaluation.calibration import apply_temperature

    out: dict[str, Any] = {"mode": decision.tta}
    if ev.logits_single is None:
        return out
    for label, logits in (("with", ev.logits), ("without", ev.logits_single)):
        probs = apply_temperature(logits, decision.temperature)
        values, _ = _interval_values(suite, ev, probs, ev_cfg, seed)
        out[label] = {k: values[k] for k in TTA_HEADLINE if k in values}
    return out


def _conformal_summary(ev: Evaluated, probs, decision, ev_cfg: Any, seed: int) -> dict[str, Any]:
    """Empirical coverage and mean set size of the conformal sets, with bootstrap intervals."""
    from medclf.conformal import coverage_and_size, expected_coverage, set_mask
    from medclf.evaluation.bootstrap import bootstrap_intervals, resampling_units

    if not decision.conformal:
        return {}
    mask = set_mask(probs, float(decision.conformal["qhat"]))
    coverage, size = coverage_and_size(mask, ev.y)
    alpha, n_cal = float(decision.conformal["alpha"]), int(decision.conformal["n"])
    out: dict[str, Any] = {
        **decision.conformal,
        "target_coverage": 1 - alpha,
        "expected_coverage_95": list(expected_coverage(n_cal, alpha)),
        "coverage": {"value": coverage},
        "mean_set_size": {"value": size},
        "refer_share": {"value": float((mask.sum(axis=1) > 1).mean())},
    }
    units = resampling_units(ev.table["patient_id"].astype(str).tolist(), len(ev.y))
    if int(ev_cfg.n_bootstrap) > 0 and len(units) >= 2:
        intervals = bootstrap_intervals(
            lambda rows: np.array(
                [*coverage_and_size(mask[rows], ev.y[rows]), (mask[rows].sum(axis=1) > 1).mean()]
            ),
            units,
            n_resamples=int(ev_cfg.n_bootstrap),
            level=float(ev_cfg.ci_level),
            method=str(ev_cfg.ci_method),
            seed=seed,
        )
        for key, ci in zip(("coverage", "mean_set_size", "refer_share"), intervals, strict=True):
            out[key].update(ci_low=ci.low, ci_high=ci.high, ci_method=ci.method)
    return out


def _nested(values: dict[str, dict[str, Any]], classes: tuple[str, ...]) -> dict[str, Any]:
    """Flat ``metric[class]`` keys -> overall / per_class / operating sections."""
    from medclf.evaluation.gates import MEASURES

    pattern = re.compile(r"^(.*)\[(.*)\]$")
    overall: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {c: {} for c in classes}
    operating: dict[str, Any] = {"per_class": {}}
    for key, v in values.items():
        m = pattern.match(key)
        if m and m.group(1).startswith("operating_"):
            operating["per_class"].setdefault(m.group(2), {})[
                m.group(1).removeprefix("operating_")
            ] = v
        elif m:
            per_class[m.group(2)][m.group(1)] = v
        elif key.startswith("operating_"):
            operating[key.removeprefix("operating_")] = v
        elif key in MEASURES:
            continue  # reported in their own sections (latency, training data)
        else:
            overall[key] = v
    return {"overall": overall, "per_class": per_class, "operating_point": operating}


def evaluate(
    run_dir: str | Path,
    split: str | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    backend: str = "torch",
) -> EvalResult:
    """``backend="onnx"`` evaluates ``RUN/export/model.onnx`` as deployed: with the temperature
    and thresholds embedded in it (nothing is refitted) and results in ``eval/<name>-onnx``."""
    from medclf.evaluation.calibration import (
        apply_temperature,
        brier_score,
        calibration_errors,
        nll,
        reliability_bins,
    )
    from medclf.evaluation.gates import judge_gates
    from medclf.evaluation.latency import measure_latency
    from medclf.evaluation.metrics import MetricSuite, confusion
    from medclf.evaluation.outputs import write_outputs
    from medclf.evaluation.settings import evaluation_config
    from medclf.evaluation.subgroups import subgroup_metrics
    from medclf.serving.predictor import OnnxPredictor, TorchPredictor, recorded_file_sha256

    if backend not in BACKENDS:
        raise MedclfError(f"backend={backend} is not valid: expected one of {', '.join(BACKENDS)}")
    overrides = list(overrides or [])
    run = RunDir.open(run_dir)
    if not run.split.is_file():
        raise MedclfError(f"{run_dir}: no split.csv; re-run 'medclf train'")
    cfg = evaluation_config(run.config, overrides)
    ev_cfg = cfg.eval
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
        name = f"{name}-onnx"
    else:
        predictor = TorchPredictor(run.root)
    classes = predictor.class_names
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise MedclfError(
            f"{name}: labels {unknown} are not classes of the model ({', '.join(classes)}); "
            "map them with data.class_map={old: new} or evaluate a model trained on them"
        )

    # 1. calibration and operating thresholds on validation (an ONNX file keeps its own)
    evaluating_val = split == "val" and not external
    val = None
    if backend == "torch":
        # the views are part of what is fitted below: validation runs with them too
        predictor.decision = dataclasses.replace(predictor.decision, tta=str(ev_cfg.tta))
    if backend == "torch" or evaluating_val:
        val_rows = split_table[split_table["split"] == "val"].reset_index(drop=True)
        val = _run_model(predictor, val_rows, "reading val", progress) if len(val_rows) else None
    if backend == "onnx":
        decision = predictor.decision
    else:
        decision = fit_decision(val, classes, ev_cfg, predictor.version)
        predictor.decision = decision

    # 2. the evaluated images
    ev = (
        val
        if (evaluating_val and val is not None)
        else _run_model(predictor, table, f"reading {name}", progress)
    )
    if backend != "onnx":
        decision.save(run.calibration)  # once every evaluated image was read
    raw = apply_temperature(ev.logits, 1.0)
    probs = apply_temperature(ev.logits, decision.temperature)
    positive = classes.index(decision.positive_class) if decision.positive_class else None
    suite = MetricSuite(
        classes,
        positive=positive,
        thresholds={classes.index(c): t for c, t in decision.thresholds.items()},
        calibration_bins=int(ev_cfg.calibration_bins),
    )
    values, ci_info = _interval_values(suite, ev, probs, ev_cfg, seed=int(cfg.get("seed", 0) or 0))
    support = suite.supports(ev.y)
    for c, n in support.items():
        values[f"support[{c}]"] = {"value": float(n)}

    # 3. calibration before/after, latency, training imbalance, subgroups
    bins = int(ev_cfg.calibration_bins)

    def calib(p: np.ndarray, temperature: float) -> dict[str, Any]:
        ece, mce = calibration_errors(p, ev.y, bins)
        return {
            "temperature": temperature,
            "ece": ece,
            "mce": mce,
            "brier": brier_score(p, ev.y),
            "nll": nll(ev.logits, ev.y, temperature),
            "reliability": reliability_bins(p, ev.y, bins),
        }

    calibration = {
        "bins": bins,
        "fitted_on": decision.fitted_on,
        "before": calib(raw, 1.0),
        "after": calib(probs, decision.temperature),
    }
    latency = measure_latency(predictor, ev, runs=int(ev_cfg.latency_runs))
    for key in ("latency_p50_ms", "latency_p95_ms", "throughput_images_per_s"):
        if latency.get(key) is not None:
            values[key] = {"value": float(latency[key])}
    train_counts = split_table.loc[split_table["split"] == "train", "label"].value_counts()
    imbalance = float(train_counts.max() / train_counts.min()) if len(train_counts) else None
    if imbalance is not None:
        values["train_imbalance_ratio"] = {"value": imbalance}
    meta_cols = [c for c in metadata_columns(ev.table) if not c.startswith("_")]
    subgroups = subgroup_metrics(
        ev.table, ev.y, probs, classes, meta_cols, int(ev_cfg.age_band_years)
    )

    # 4. gates
    gates = judge_gates(ev_cfg.gates, values, classes, on=str(ev_cfg.gates_on))
    y_pred = probs.argmax(axis=1)
    decisions = [decision.decide(p, classes) for p in probs]
    nested = _nested(values, classes)
    nested["operating_point"].update(
        rule=decision.rule,
        thresholds=decision.thresholds,
        positive_class=decision.positive_class,
        fitted_on=decision.fitted_on,
    )
    patients = ev.table["patient_id"].astype(str).replace("nan", "")
    metrics = {
        "run": str(run.root),
        "evaluated": {
            "name": name,
            "source": str(cfg.data.path) if external else f"{run.split} (split={name})",
            "external": external,
            "images": len(ev.y),
            "patients": int(patients[patients != ""].nunique()),
            "class_counts": support,
        },
        "model": predictor.info(),
        "task": {
            "classes": list(classes),
            "binary": len(classes) == 2,
            "positive_class": None if positive is None else classes[positive],
        },
        "confidence_intervals": ci_info,
        **nested,
        "calibration": calibration,
        "confusion_matrix": confusion(ev.y, y_pred, len(classes)).tolist(),
        "latency": latency,
        "train_class_counts": {k: int(v) for k, v in train_counts.items()},
        "train_imbalance_ratio": imbalance,
        "subgroups": subgroups,
        "gates": {"passed": gates["passed"], "failed": gates["failed"]},
        "tta": _tta_comparison(suite, ev, decision, ev_cfg, int(cfg.get("seed", 0) or 0)),
        "conformal": _conformal_summary(ev, probs, decision, ev_cfg, int(cfg.get("seed", 0) or 0)),
    }
    out = run.eval_dir(name)
    # Built in a staging folder and renamed: a killed evaluation never leaves an eval/<name>/
    # that looks complete (the staging folder is swept by the next command on the run).
    with atomic_dir(out) as staging:
        write_outputs(run, staging, metrics, values, gates, ev, probs, decisions, predictor, ev_cfg)
    if name == "test" and not external:
        # the run's card describes its checkpoint on its own test split
        with atomic_path(run.model_card) as tmp:
            shutil.copyfile(out / "model_card.md", tmp)
    return EvalResult(out_dir=out, metrics=metrics, gates=gates)
