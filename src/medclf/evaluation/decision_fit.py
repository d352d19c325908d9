"""Fitting the decision record on the validation split: temperature, operating thresholds,
the binary positive class and the conformal quantile (``medclf evaluate``'s step 3)."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from medclf.data.folds import FOLD_COLUMN
from medclf.decision import DecisionRecord
from medclf.errors import MedclfError
from medclf.evaluation.calibration import CROSS_FIT_FOLDS, fold_of

log = logging.getLogger("medclf")
# Class names that mean "no finding"; the other class of a binary task is the positive one.
NEGATIVE_NAMES = re.compile(
    r"^(normal|negative|healthy|benign|control|none|no|no[_\-. ].+|non[_\-. ].+|nofinding)$", re.I
)


def positive_class(classes: tuple[str, ...], wanted: str | None) -> int | None:
    """The binary task's positive class index (None for more classes): ``wanted``, else the
    class that is not named like "normal"."""
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


def fit_decision(val: Any, classes: tuple[str, ...], ev_cfg: Any, version: str) -> DecisionRecord:
    """Temperature (NLL on validation) then thresholds on the calibrated validation probs.
    ``val`` is the validation split run through the model (``evaluate.Evaluated``) or None."""
    from medclf.evaluation.calibration import apply_temperature
    from medclf.evaluation.thresholds import parse_rule

    rule = parse_rule(ev_cfg.threshold)
    positive = positive_class(classes, ev_cfg.positive_class)
    if val is None or len(val.y) == 0:
        log.warning("no validation images: temperature 1 and argmax decisions")
        return DecisionRecord(positive_class=None if positive is None else classes[positive])
    from medclf.conformal import fit_lac

    groups = _groups(val)
    temperature, t_fit = _temperature(val, ev_cfg.temperature_scaling, groups)
    probs = apply_temperature(val.logits, temperature)
    alpha = ev_cfg.get("conformal_alpha")
    conformal = fit_lac(probs, val.y, float(alpha)).to_dict() if alpha is not None else {}
    thresholds = _thresholds(probs, val.y, classes, positive, rule, warn=True)
    rule_fit = choose_rule(probs, val.y, classes, positive, rule, ev_cfg.decision, groups)
    if thresholds and not rule_fit["thresholds_decide"]:
        log.info("decision: %s", rule_fit["reason"])
        thresholds = {}
    return DecisionRecord(
        temperature=temperature,
        rule=str(rule) if thresholds else "argmax",
        thresholds=thresholds,
        positive_class=None if positive is None else classes[positive],
        fitted_on={
            "split": "val",
            "images": len(val.y),
            "model_version": version,
            # a fold ensemble's validation: each image predicted by the fold that left it out
            **({"out_of_fold": True} if FOLD_COLUMN in val.table else {}),
            **({"temperature_fit": t_fit} if t_fit else {}),
            "decision_fit": {"rule": str(rule), **rule_fit},
        },
        tta=str(ev_cfg.tta),
        conformal=conformal,
    )


def _temperature(val: Any, mode: Any, groups: np.ndarray | None) -> tuple[float, dict[str, Any]]:
    """(T, the cross-fitting evidence) for ``eval.temperature_scaling`` = auto | true | false."""
    from medclf.evaluation.calibration import cross_fitted_temperature, fit_temperature

    if mode is False:
        return 1.0, {}
    if mode is True:
        return fit_temperature(val.logits, val.y), {}
    fit = cross_fitted_temperature(val.logits, val.y, groups)
    log.info("temperature: %s", fit.reason)
    return fit.temperature, fit.to_dict()


def _groups(val: Any) -> np.ndarray | None:
    """The validation images' patients, for cross-fitting (an image without one is its own
    group); None when no patient is known."""
    pid = val.table["patient_id"].astype(str).to_numpy() if "patient_id" in val.table else None
    if pid is None or not (pid != "").any():
        return None
    return np.where(pid != "", pid, [f"image-{i}" for i in range(len(pid))])


def _thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    positive: int | None,
    rule: Any,
    warn: bool = False,
) -> dict[str, float]:
    """The rule's threshold for the positive class (binary) or each class (one-vs-rest); a
    class without positives or negatives among ``y`` gets none."""
    from medclf.evaluation.thresholds import choose_threshold

    out: dict[str, float] = {}
    for i in [positive] if positive is not None else range(len(classes)):
        try:
            out[classes[i]] = choose_threshold(y == i, probs[:, i], rule).threshold
        except MedclfError:
            if warn:
                log.warning(
                    "class %s: validation lacks positives or negatives; no threshold", classes[i]
                )
    return out


def choose_rule(
    probs: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    positive: int | None,
    rule: Any,
    mode: str,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Whether the rule's thresholds or argmax decide (``eval.decision``), with the evidence.

    auto with a youden rule: the thresholds decide only where they beat argmax out of sample
    (``cross_fitted_gain``). Why: on an easy validation split a youden threshold sits at the
    hardest validation positive and misses test positives (a chest_ct model: decision
    accuracy 0.673 with thresholds against 0.698 at argmax, lowest class sensitivity 0.356
    against 0.412). A sensitivity>=X or specificity>=X rule is a clinical constraint: it
    decides whatever the comparison would say."""
    if mode != "auto" or rule.kind != "youden":
        decide = mode != "argmax"
        why = f"eval.decision={mode}" if mode != "auto" else f"the rule {rule} is a constraint"
        who = "the thresholds decide" if decide else "argmax decides"
        return {"thresholds_decide": decide, "reason": f"{why}: {who}"}
    n = len(y)
    k = min(CROSS_FIT_FOLDS, len(np.unique(groups)) if groups is not None else n)
    if n < 2 * CROSS_FIT_FOLDS or k < 2:
        return {
            "thresholds_decide": False,
            "reason": f"too few validation images ({n}) to cross-fit thresholds; argmax decides",
        }
    with_thresholds, at_argmax, low = cross_fitted_gain(
        probs, y, classes, positive, rule, groups, k
    )
    kept = low > 0
    return {
        "thresholds_decide": kept,
        "balanced_accuracy_thresholds": with_thresholds,
        "balanced_accuracy_argmax": at_argmax,
        "gain_low": low,
        "folds": k,
        "reason": f"cross-fitted validation balanced accuracy {with_thresholds:.3f} with the "
        f"{rule} thresholds vs {at_argmax:.3f} at argmax ({k} folds): "
        + ("the thresholds decide" if kept else "argmax decides"),
    }


def cross_fitted_gain(
    probs: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    positive: int | None,
    rule: Any,
    groups: np.ndarray | None,
    folds: int,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(balanced accuracy with thresholds, at argmax, the gain's one-sided 95% lower bound).

    Thresholds fitted on the other folds of the validation patients decide each held-out
    fold; argmax decides the same images. Balanced accuracy is a weighted sum of per-image
    hits (weight 1 / (classes x the image's class count)), so the paired per-image
    differences give the gain and its noise, as the temperature's cross-fitting does. An
    image that no class is flagged for (a referral) counts as a miss."""
    y = np.asarray(y)
    fold = fold_of(y, groups, folds, seed)
    name = None if positive is None else classes[positive]
    hits = np.zeros(len(y), bool)
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        fitted = _thresholds(probs[fold != f], y[fold != f], classes, positive, rule)
        record = DecisionRecord(thresholds=fitted, positive_class=name)
        for i in held:
            hits[i] = record.decide(probs[i], classes)["label"] == classes[y[i]]
    argmax_hits = probs.argmax(axis=1) == y
    counts = np.bincount(y, minlength=len(classes))
    weight = 1.0 / ((counts > 0).sum() * counts[y])
    diff = weight * (hits.astype(float) - argmax_hits)
    low = float(diff.sum() - 1.645 * np.sqrt(len(y)) * diff.std(ddof=1))
    return float((weight * hits).sum()), float((weight * argmax_hits).sum()), low
