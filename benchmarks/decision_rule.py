"""Which rule should decide a prediction: the youden thresholds always (the earlier default,
``eval.decision=thresholds``) or only where they beat argmax on cross-fitted validation
(``eval.decision=auto``, the default now).

The same trained weights are evaluated twice through the real CLI, once per setting; the
choice is made on validation only, and the deployed decision (the ``decision`` column of
``eval/test/predictions.csv``, what ``predict`` and ``serve`` answer) is scored on test:
accuracy and balanced accuracy with 95% percentile bootstrap intervals over images, the
lowest class sensitivity, and how many images got no label (referred). One row per run and
setting, markdown and JSON.

    .venv/bin/python benchmarks/decision_rule.py RUN [RUN ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import QUICK, medclf  # the suite's runner: one copy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SETTINGS = ("thresholds", "auto")
RESAMPLES = 2000


def _balanced(true: np.ndarray, decided: np.ndarray, classes: list[str]) -> float:
    return float(np.mean([(decided[true == c] == c).mean() for c in classes if (true == c).any()]))


def _interval(true: np.ndarray, decided: np.ndarray, classes: list[str]) -> dict[str, list]:
    rng = np.random.default_rng(0)
    acc, bacc = [], []
    for _ in range(RESAMPLES):
        i = rng.integers(0, len(true), len(true))
        acc.append(float((decided[i] == true[i]).mean()))
        bacc.append(_balanced(true[i], decided[i], classes))
    return {
        "accuracy": np.percentile(acc, [2.5, 97.5]).round(3).tolist(),
        "balanced_accuracy": np.percentile(bacc, [2.5, 97.5]).round(3).tolist(),
    }


def score(run: Path, setting: str) -> dict:
    """Evaluate ``run`` with ``eval.decision=setting`` and score its deployed decision."""
    medclf("evaluate", f"model={run}", f"eval.decision={setting}", *QUICK, cwd=run.parent)
    folder = run / "eval" / "test"
    frame = pd.read_csv(folder / "predictions.csv", dtype=str, keep_default_na=False)
    op = json.loads((folder / "metrics.json").read_text())["operating_point"]
    true, decided = frame["true"].to_numpy(), frame["decision"].to_numpy()
    classes = sorted(set(true))
    sens = {c: float((decided[true == c] == c).mean()) for c in classes}
    lowest = min(sens, key=sens.get)
    fit = (op.get("fitted_on") or {}).get("decision_fit") or {}
    return {
        "run": run.name,
        "setting": setting,
        "decides": op["rule"],
        "why": fit.get("reason", ""),
        "images": len(true),
        "accuracy": round(float((decided == true).mean()), 3),
        "balanced_accuracy": round(_balanced(true, decided, classes), 3),
        **{f"{k}_ci": v for k, v in _interval(true, decided, classes).items()},
        "lowest_sensitivity": round(sens[lowest], 3),
        "lowest_class": lowest,
        "referred": int((decided == "").sum()),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | eval.decision | decides | test accuracy | balanced accuracy | lowest sensitivity"
        " | referred |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['setting']} | {r['decides']} | {r['accuracy']:.3f} "
            f"{r['accuracy_ci']} | {r['balanced_accuracy']:.3f} {r['balanced_accuracy_ci']} | "
            f"{r['lowest_sensitivity']:.3f} ({r['lowest_class']}) | {r['referred']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("decision_rule.json"))
    args = parser.parse_args()
    rows = [score(run.resolve(), s) for run in args.runs for s in SETTINGS]
    args.out.write_text(json.dumps(rows, indent=2))
    print(table(rows))
    for r in rows:
        if r["why"]:
            print(f"{r['run']} {r['setting']}: {r['why']}")


if __name__ == "__main__":
    main()
