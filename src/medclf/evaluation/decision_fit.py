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
    from medclf.evaluation.thresholds import choose_threshold, parse_rule

    rule = parse_rule(ev_cfg.threshold)
    positive = positive_class(classes, ev_cfg.positive_class)
    if val is None or len(val.y) == 0:
        log.warning("no validation images: temperature 1 and argmax decisions")
        return DecisionRecord(positive_class=None if positive is None else classes[positive])
    from medclf.conformal import fit_lac

    temperature, t_fit = _temperature(val, ev_cfg.temperature_scaling)
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
        fitted_on={
            "split": "val",
            "images": len(val.y),
            "model_version": version,
            # a fold ensemble's validation: each image predicted by the fold that left it out
            **({"out_of_fold": True} if FOLD_COLUMN in val.table else {}),
            **({"temperature_fit": t_fit} if t_fit else {}),
        },
        tta=str(ev_cfg.tta),
        conformal=conformal,
    )


def _temperature(val: Any, mode: Any) -> tuple[float, dict[str, Any]]:
    """(T, the cross-fitting evidence) for ``eval.temperature_scaling`` = auto | true | false."""
    from medclf.evaluation.calibration import cross_fitted_temperature, fit_temperature

    if mode is False:
        return 1.0, {}
    if mode is True:
        return fit_temperature(val.logits, val.y), {}
    pid = val.table["patient_id"].astype(str).to_numpy() if "patient_id" in val.table else None
    groups = None
    if pid is not None and (pid != "").any():
        # images without a patient id are their own group
        groups = np.where(pid != "", pid, [f"image-{i}" for i in range(len(pid))])
    fit = cross_fitted_temperature(val.logits, val.y, groups)
    log.info("temperature: %s", fit.reason)
    return fit.temperature, fit.to_dict()
