"""Scores of one evaluation: every metric with a bootstrap interval, the same with and without
test-time augmentation, the conformal sets' coverage, and calibration before and after the
temperature (``medclf evaluate``'s steps 4 and 5)."""

from __future__ import annotations

from typing import Any

import numpy as np

TTA_HEADLINE = ("accuracy", "macro_auc")


def _units(ev: Any) -> list:
    from medclf.evaluation.bootstrap import resampling_units

    return resampling_units(ev.table["patient_id"].astype(str).tolist(), len(ev.y))


def _bootstrap(statistic, units: list, ev_cfg: Any, seed: int) -> list | None:
    """Intervals of ``statistic`` over resampled ``units``; None when turned off or too few."""
    from medclf.evaluation.bootstrap import bootstrap_intervals

    if int(ev_cfg.n_bootstrap) <= 0 or len(units) < 2:
        return None
    return bootstrap_intervals(
        statistic,
        units,
        n_resamples=int(ev_cfg.n_bootstrap),
        level=float(ev_cfg.ci_level),
        method=str(ev_cfg.ci_method),
        seed=seed,
    )


def _attach(values: dict[str, Any], names, intervals: list | None) -> None:
    """Each name's interval into its value (one interval per name, in order)."""
    for key, ci in zip(names, intervals or [], strict=intervals is not None):
        values[key].update(ci_low=ci.low, ci_high=ci.high, ci_method=ci.method)


def interval_values(
    suite, ev: Any, probs: np.ndarray, ev_cfg: Any, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every metric of ``suite`` as ``{flat name: {value, ci_low, ci_high, ci_method}}``, and
    how the intervals were made (resampling patients where the images have patient ids)."""
    names = suite.keys()
    point = suite.compute(ev.y, probs)
    values = {k: {"value": float(v)} for k, v in zip(names, point, strict=True)}
    units = _units(ev)
    info = {
        "level": float(ev_cfg.ci_level),
        "method": str(ev_cfg.ci_method),
        "resamples": int(ev_cfg.n_bootstrap),
        "unit": "patient" if len(units) < len(ev.y) else "image",
        "units": len(units),
        "seed": seed,
    }
    intervals = _bootstrap(lambda rows: suite.compute(ev.y[rows], probs[rows]), units, ev_cfg, seed)
    _attach(values, names, intervals)
    # metrics whose BCa interval was replaced by the percentile one (tied resamples)
    info["percentile_fallback"] = [
        k for k in names if "tied" in str(values[k].get("ci_method", ""))
    ]
    return values, info


def tta_comparison(suite, ev: Any, decision, ev_cfg: Any, seed: int) -> dict[str, Any]:
    """Headline metrics with intervals with and without the TTA views (same images, same
    temperature), so the gain of ``eval.tta`` is measured, not assumed."""
    from medclf.evaluation.calibration import apply_temperature

    out: dict[str, Any] = {"mode": decision.tta}
    if ev.logits_single is None:
        return out
    for label, logits in (("with", ev.logits), ("without", ev.logits_single)):
        probs = apply_temperature(logits, decision.temperature)
        values, _ = interval_values(suite, ev, probs, ev_cfg, seed)
        out[label] = {k: values[k] for k in TTA_HEADLINE if k in values}
    return out


def conformal_summary(ev: Any, probs, decision, ev_cfg: Any, seed: int) -> dict[str, Any]:
    """Empirical coverage and mean set size of the conformal sets, with bootstrap intervals."""
    from medclf.conformal import coverage_and_size, expected_coverage, set_mask

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
    intervals = _bootstrap(
        lambda rows: np.array(
            [*coverage_and_size(mask[rows], ev.y[rows]), (mask[rows].sum(axis=1) > 1).mean()]
        ),
        _units(ev),
        ev_cfg,
        seed,
    )
    _attach(out, ("coverage", "mean_set_size", "refer_share"), intervals)
    return out


def calibration_summary(ev: Any, decision, bins: int) -> dict[str, Any]:
    """ECE, MCE, Brier, NLL and reliability bins at temperature 1 and at the fitted one."""
    from medclf.evaluation.calibration import (
        apply_temperature,
        brier_score,
        calibration_errors,
        nll,
        reliability_bins,
    )

    def at(temperature: float) -> dict[str, Any]:
        p = apply_temperature(ev.logits, temperature)
        ece, mce = calibration_errors(p, ev.y, bins)
        return {
            "temperature": temperature,
            "ece": ece,
            "mce": mce,
            "brier": brier_score(p, ev.y),
            "nll": nll(ev.logits, ev.y, temperature),
            "reliability": reliability_bins(p, ev.y, bins),
        }

    return {
        "bins": bins,
        "fitted_on": decision.fitted_on,
        "before": at(1.0),
        "after": at(decision.temperature),
    }


def validation_gap(val: Any, accuracy: dict[str, Any], name: str) -> dict[str, Any]:
    """Whether the validation split that the temperature, thresholds and conformal quantile
    were fitted on is easier than the evaluated one: its accuracy above the evaluated
    accuracy's whole interval. On three hidden X-ray and MRI sets validation accuracy was
    0.93-0.96 against test 0.75-0.82: everything fitted on validation was optimistic there,
    and the report must say so rather than let the promised coverage stand."""
    val_acc = float((val.logits.argmax(axis=1) == val.y).mean()) if len(val.y) else None
    high = accuracy.get("ci_high")
    easier = val_acc is not None and high is not None and val_acc > float(high)
    out = {
        "val_accuracy": val_acc,
        "val_images": len(val.y),
        "accuracy": accuracy.get("value"),
        "ci_low": accuracy.get("ci_low"),
        "ci_high": high,
        "easier": bool(easier),
    }
    if easier:
        out["note"] = (
            f"validation is easier than {name}: accuracy {val_acc:.3f} on {len(val.y)} "
            f"validation images, above {name}'s interval [{accuracy['ci_low']:.3f}, "
            f"{high:.3f}]; the temperature, thresholds and conformal sets fitted on validation "
            f"are optimistic here (expect lower sensitivity and coverage on {name} than promised)"
        )
    return out


def class_shares(
    split_table: Any,
    name: str,
    labels: Any,
    classes: tuple[str, ...],
    operating: dict[str, Any],
    per_class: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Binary tasks: the positive class's share in each split, and the deployed decision's PPV
    and NPV at each share (Bayes' rule on the evaluated sensitivity and specificity, which do
    not depend on the share). Answers "what if the class shares differ": a threshold chosen
    where 90% are positive predicts differently where 40% are. The decision is the operating
    point's, or argmax's (``per_class``, the headline rates) where argmax decides."""
    positive = operating.get("positive_class")
    rates = (operating.get("per_class") or {}).get(positive) or {}
    if not operating.get("thresholds") and per_class:
        rates = per_class.get(positive) or {}
    if positive is None or len(classes) != 2 or "sensitivity" not in rates:
        return None
    sens = float(rates["sensitivity"]["value"])
    spec = float(rates["specificity"]["value"])
    shares = {
        split: float((rows["label"] == positive).mean())
        for split, rows in split_table.groupby("split")
        if split in ("train", "val") and len(rows)
    }
    shares[name] = float((labels == positive).mean())
    rows = []
    for split, p in shares.items():
        pos, neg = sens * p, (1 - spec) * (1 - p)
        tn, fn = spec * (1 - p), (1 - sens) * p
        ppv = pos / (pos + neg) if pos + neg else None
        npv = tn / (tn + fn) if tn + fn else None
        rows.append({"split": split, "share": p, "ppv": ppv, "npv": npv})
    return {"positive_class": positive, "sensitivity": sens, "specificity": spec, "rows": rows}
