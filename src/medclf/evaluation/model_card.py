"""``model_card.md``: what the model is for, what it was trained and tested on, how well it
does (with intervals), how it is calibrated and thresholded, which gates it passed, how it
does per subgroup, and the limitations the numbers themselves reveal."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from medclf.atomic import atomic_path
from medclf.formatting import estimate as fmt
from medclf.formatting import number
from medclf.run_config import load_run_config

SMALL_GROUP = 30


def data_fingerprint(split_csv: Path) -> str:
    """Content hash of the exact image set (every file's sha256 and label, order-free)."""
    table = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    rows = sorted(
        f"{s}:{lbl}:{sp}"
        for s, lbl, sp in zip(table["sha256"], table["label"], table["split"], strict=True)
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def split_counts(split_csv: Path) -> pd.DataFrame:
    table = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    counts = table.groupby(["label", "split"]).size().unstack(fill_value=0)
    return counts[[c for c in ("train", "val", "test") if c in counts.columns]]


def limitations(metrics: dict[str, Any], values: dict[str, Any]) -> list[str]:
    out = []
    ev = metrics["evaluated"]
    acc = values.get("accuracy", {})
    if acc.get("ci_low") is not None and acc["ci_high"] - acc["ci_low"] > 0.1:
        out.append(
            f"The evaluation set is small ({ev['images']} images): the 95% interval of accuracy "
            f"spans {number(acc['ci_high'] - acc['ci_low'], 2)}. Collect more test data before "
            "relying on differences of a few points."
        )
    if not ev["external"]:
        out.append(
            "Tested on a held-out split of the training source only; performance on other "
            "scanners, sites or populations is unknown until evaluated externally "
            "(`medclf evaluate model=RUN data.path=OTHER`)."
        )
    for c in metrics["task"]["classes"]:
        sens = values.get(f"sensitivity[{c}]", {}).get("value")
        if sens is not None and sens < 0.8:
            out.append(f"Class '{c}' is missed often: sensitivity {number(sens, 2)} on this data.")
    ratio = metrics.get("train_imbalance_ratio")
    if ratio and ratio >= 3:
        out.append(f"Training classes are imbalanced ({ratio:.1f}:1 largest to smallest).")
    for col, groups in metrics.get("subgroups", {}).items():
        small = [g for g, v in groups.items() if v["n"] < SMALL_GROUP]
        if small:
            out.append(
                f"Subgroups of {col} with fewer than {SMALL_GROUP} images ({', '.join(small)}) "
                "give unreliable estimates."
            )
    gap = metrics.get("validation_gap") or {}
    if gap.get("easier"):
        out.append(gap["note"][0].upper() + gap["note"][1:] + ".")
    cal = metrics["calibration"]
    if cal["fitted_on"]:
        out.append(
            f"Temperature and thresholds were fitted on {cal['fitted_on'].get('images')} "
            + ("out-of-fold " if cal["fitted_on"].get("out_of_fold") else "")
            + "validation images from the training source; refit them on local data before "
            "use at a new site."
        )
    out.append(
        "Not a medical device. Intended for research and as decision support reviewed by a "
        "qualified reader, not for autonomous diagnosis."
    )
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _conformal_section(metrics: dict[str, Any]) -> list[str]:
    conf = metrics.get("conformal") or {}
    if not conf:
        return []
    target = conf["target_coverage"]
    return [
        "## Prediction sets",
        f"Each prediction comes with a set of classes that contains the true class for "
        f"{target:.0%} of images like the validation images (split conformal prediction, "
        f"{conf['method'].upper()}, fitted on {conf['n']} validation images). One class in the "
        "set: the model is confident at that level. More than one: the model cannot tell "
        "these classes apart reliably; treat the image as a **refer** to a reader. The promise "
        "holds on average over images from the same population, not for each image, and not "
        "for scanners or sites the validation split did not include.",
        _table(
            ["", "value (95% CI)"],
            [
                ["target coverage", number(target, 2)],
                [
                    f"expected for a split like validation (n={conf['n']}, 95%)",
                    "[{}, {}]".format(*(number(b, 2) for b in conf["expected_coverage_95"])),
                ],
                ["coverage on this split", fmt(conf["coverage"])],
                ["mean set size", fmt(conf["mean_set_size"], 2)],
                ["share of refers (set > 1 class)", fmt(conf["refer_share"])],
            ],
        ),
    ]


def _tta_section(metrics: dict[str, Any]) -> list[str]:
    tta = metrics.get("tta") or {}
    if not tta.get("with"):
        return []
    rows = [[k, fmt(tta["without"].get(k)), fmt(tta["with"].get(k))] for k in tta["with"]]
    return [
        f"## Test-time augmentation: {tta['mode']}",
        "Logits averaged over the views below; every number above uses them, as deployed.",
        _table(["metric", "one view", f"with {tta['mode']}"], rows),
    ]


def _model_section(cfg: Any, prep: Any, metrics: dict[str, Any]) -> list[str]:
    classes = metrics["task"]["classes"]
    return [
        "## Intended use",
        f"Classifies {prep.channels}-channel medical images into "
        f"{len(classes)} classes ({', '.join(classes)}). For research and decision support "
        "reviewed by a qualified reader; not for autonomous diagnosis and not a medical device.",
        "## Model",
        _table(
            ["field", "value"],
            [
                ["architecture", f"`{cfg.model.name}`"],
                ["weights version", f"`{metrics['model']['version']}` (weights/best.ckpt)"],
                [
                    "input",
                    f"{prep.image_size} px, {prep.channels} channel(s), "
                    f"normalization {prep.normalize}",
                ],
                ["temperature", number(metrics["calibration"]["after"]["temperature"])],
                ["operating rule", f"`{metrics['operating_point']['rule']}`"],
            ],
        ),
    ]


def _data_section(cfg: Any, run: Any) -> list[str]:
    counts = split_counts(run.split)
    return [
        "## Training data",
        f"Source `{cfg.data.path}`; data fingerprint `{data_fingerprint(run.split)}` "
        "(sha256 of every image, label and split).",
        _table(
            ["class", *counts.columns],
            [[c, *(int(v) for v in counts.loc[c])] for c in counts.index],
        ),
    ]


def _evaluation_section(metrics: dict[str, Any], values: dict[str, Any]) -> list[str]:
    ev, ci = metrics["evaluated"], metrics["confidence_intervals"]
    per_class = ("sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc")
    return [
        f"## Evaluation: {ev['name']}",
        f"{ev['images']} images, {ev['patients']} patients, from {ev['source']}. "
        f"{int(ci['level'] * 100)}% intervals: {ci['method']} bootstrap, {ci['resamples']} "
        f"resamples of {ci['units']} {ci['unit']}s"
        + (
            f"; percentile for {', '.join(ci['percentile_fallback'])}, whose resamples were "
            "too often tied for BCa."
            if ci.get("percentile_fallback")
            else "."
        ),
        _table(["metric", "value (95% CI)"], [[k, fmt(values[k])] for k in metrics["overall"]]),
        "### Per class (one-vs-rest, argmax decision)",
        _table(
            ["class", "n", "sensitivity", "specificity", "PPV", "NPV", "F1", "ROC-AUC"],
            [
                [c, ev["class_counts"][c], *(fmt(values.get(f"{m}[{c}]"), 2) for m in per_class)]
                for c in metrics["task"]["classes"]
            ],
        ),
    ]


def _decision_section(metrics: dict[str, Any]) -> list[str]:
    cal, op = metrics["calibration"], metrics["operating_point"]
    rates = ("sensitivity", "specificity", "ppv", "npv")
    return [
        "## Calibration",
        _table(
            ["", "temperature", "ECE", "MCE", "Brier", "NLL"],
            [
                [k, number(cal[k]["temperature"])]
                + [number(cal[k][m], 4) for m in ("ece", "mce", "brier", "nll")]
                for k in ("before", "after")
            ],
        ),
        *_temperature_note(cal),
        "## Operating point",
        f"Rule `{op['rule']}` chosen on validation; thresholds on calibrated probabilities."
        + _decision_note(op),
        _table(
            ["class", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
            [
                [c, number(t, 4), *(fmt(op["per_class"].get(c, {}).get(m), 2) for m in rates)]
                for c in metrics["task"]["classes"]
                if (t := op["thresholds"].get(c)) is not None
            ],
        ),
        *_shares_section(metrics.get("class_shares")),
    ]


def _shares_section(shares: dict[str, Any] | None) -> list[str]:
    """PPV and NPV at each split's share of the positive class (sensitivity and specificity
    stay; the predictive values move with the share)."""
    if not shares:
        return []
    return [
        f"When the share of {shares['positive_class']} differs, sensitivity "
        f"{number(shares['sensitivity'], 2)} and specificity {number(shares['specificity'], 2)} "
        "stay, the predictive values move:",
        _table(
            ["split", f"{shares['positive_class']} share", "PPV", "NPV"],
            [
                [r["split"], number(r["share"], 2), number(r["ppv"], 2), number(r["npv"], 2)]
                for r in shares["rows"]
            ],
        ),
    ]


def _decision_note(op: dict[str, Any]) -> str:
    """Why thresholds or argmax decide (``eval.decision``), when evaluate recorded it."""
    fit = (op.get("fitted_on") or {}).get("decision_fit")
    return f" Which rule decides: {fit['reason']}." if fit else ""


def _temperature_note(cal: dict[str, Any]) -> list[str]:
    """Why the applied temperature is what it is (``eval.temperature_scaling=auto``)."""
    t_fit = (cal.get("fitted_on") or {}).get("temperature_fit")
    if not t_fit:
        return []
    kept = "applied" if t_fit["kept"] else "not applied"
    return [
        f"Temperature fitted on validation: {number(t_fit['fitted'])}, {kept}: {t_fit['reason']}."
    ]


def _gates_section(gates: dict[str, Any]) -> list[str]:
    rows = [
        [
            g["gate"],
            "n/a" if g["value"] is None else f"{g['value']:.4g}",
            g["judged_on"],
            "pass" if g["passed"] else "**FAIL**",
        ]
        for g in gates["gates"]
    ]
    verdict = "PASSED" if gates["passed"] else "FAILED"
    return [f"## Quality gates: {verdict}", _table(["gate", "value", "judged on", "result"], rows)]


def _subgroup_section(metrics: dict[str, Any]) -> list[str]:
    if not metrics.get("subgroups"):
        return []
    parts = ["## Subgroups"]
    header = ["group", "n", "accuracy (95% CI)", "balanced acc.", "macro AUC"]
    for col, groups in metrics["subgroups"].items():
        rows = [
            [g, v["n"], fmt(v["accuracy"]), number(v["balanced_accuracy"]), number(v["macro_auc"])]
            for g, v in groups.items()
        ]
        parts += [f"### {col}", _table(header, rows)]
    return parts


def write_model_card(run, path: Path, metrics, values, gates) -> Path:
    """The card, section by section in the order a reader meets them."""
    from medclf.preprocessing import Preprocessing

    cfg = load_run_config(run.config)
    prep = Preprocessing.load_file(run.preprocessing)
    parts = [
        f"# Model card: {run.name}",
        *_model_section(cfg, prep, metrics),
        *_data_section(cfg, run),
        *_evaluation_section(metrics, values),
        *_decision_section(metrics),
        *_conformal_section(metrics),
        *_tta_section(metrics),
        *_gates_section(gates),
        *_subgroup_section(metrics),
        "## Limitations",
        *(f"- {line}" for line in limitations(metrics, values)),
    ]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n\n".join(parts) + "\n")
    return path
