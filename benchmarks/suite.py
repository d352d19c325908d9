"""The development suite: the default command on every set of ``../shared/datasets/``.

A default (the recipe, calibration, the decision rule) is judged on every modality, never on
one. For each suite set, one at a time, exactly what a new user runs:

    medclf train data.path=SET train.time_budget=BUDGET
    medclf evaluate model=RUN split=val      # what the recipe may be chosen on
    medclf evaluate model=RUN                # the test split: reported, never chosen on

and one table (markdown and JSON) with the recipe line, validation and test accuracy, macro
AUC, balanced accuracy, the lowest class sensitivity at the shipped decision, ECE before and
after calibration, the temperature and whether it was kept, conformal coverage and set size,
quadratic weighted kappa and mean absolute grade error for ordered grades, each test number
with its 95% bootstrap interval, the wall time and the git commit. A set that is not on this
machine is listed as missing, not skipped silently.

    .venv/bin/python benchmarks/suite.py [--budget 15m] [--only chest_ct,knee_oa]
        [--out benchmarks/results/suite] [--keep DIR]

Published numbers stand beside ours only with their source; none is recorded for a set until
someone cites one (``PUBLISHED``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


@dataclass(frozen=True)
class SuiteSet:
    name: str
    modality: str
    path: str  # under DATASETS; medclf finds the layout (folders, manifest, no split)
    words: tuple[str, ...] = ()  # settings the set needs (none: the default command)
    published: tuple[dict[str, Any], ...] = field(default_factory=tuple)


SUITE = (
    SuiteSet("chest_ct", "CT", "chest_ct/Data"),
    SuiteSet("breast_us", "ultrasound", "breast_us"),
    SuiteSet("knee_oa", "knee X-ray (ordered grades)", "knee_oa"),
    SuiteSet("skin_lesion", "dermoscopy", "skin_lesion"),
    SuiteSet("blood_cells", "RGB microscopy", "blood_cells"),
)
# Each entry: {"metric": "macro_auc", "value": 0.9, "source": "author, venue year, table N"}.
PUBLISHED: dict[str, tuple[dict[str, Any], ...]] = {}
QUICK = ("eval.latency_runs=0", "eval.gradcam_per_class=0")


def medclf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medclf", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"medclf {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc


def _interval(metric: Any) -> dict[str, Any] | None:
    if not isinstance(metric, dict):
        return None if metric is None else {"value": metric}
    return {k: metric.get(k) for k in ("value", "ci_low", "ci_high")}


def _test_numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    overall, per_class = metrics["overall"], metrics["per_class"]
    # the shipped decision: the thresholds chosen on validation where there are any
    op = metrics.get("operating_point") or {}
    decided = op.get("per_class") or {}
    sens = {
        c: (decided.get(c) or {}).get("sensitivity") or pc["sensitivity"]
        for c, pc in per_class.items()
    }
    lowest = min(sens, key=lambda c: sens[c]["value"])
    cal = metrics["calibration"]
    t_fit = (cal.get("fitted_on") or {}).get("temperature_fit") or {}
    conformal = metrics.get("conformal") or {}
    return {
        **{k: _interval(overall.get(k)) for k in ("accuracy", "macro_auc", "balanced_accuracy")},
        "lowest_sensitivity": {**_interval(sens[lowest]), "class": lowest},
        "ece_before": cal["before"]["ece"],
        "ece_after": _interval(overall.get("ece")),
        "temperature": cal["after"]["temperature"],
        "temperature_kept": t_fit.get("kept"),
        "conformal_coverage": _interval(conformal.get("coverage")),
        "mean_set_size": _interval(conformal.get("mean_set_size")),
        "quadratic_kappa": _interval(overall.get("quadratic_kappa")),
        "mean_absolute_error": _interval(overall.get("mean_absolute_error")),
    }


def run_set(entry: SuiteSet, work: Path, budget: str) -> dict[str, Any]:
    start = time.perf_counter()
    data = DATASETS / entry.path
    common = [f"data.path={data}", "runs_root=runs", "logger=[csv]", "train.progress_bar=false"]
    proc = medclf(
        "train",
        *common,
        f"train.time_budget={budget}",
        f"run_name={entry.name}",
        *entry.words,
        cwd=work,
    )
    recipe = next((ln for ln in proc.stderr.splitlines() if "recipe:" in ln), "")
    run = next(ln for ln in proc.stdout.splitlines() if ln.startswith("run: "))[5:].strip()
    trained = time.perf_counter() - start
    medclf("evaluate", f"model={run}", "split=val", *QUICK, cwd=work)
    val = json.loads((work / run / "eval" / "val" / "metrics.json").read_text())["overall"]
    medclf("evaluate", f"model={run}", *QUICK, cwd=work)
    metrics = json.loads((work / run / "eval" / "test" / "metrics.json").read_text())
    return {
        "set": entry.name,
        "modality": entry.modality,
        "recipe": recipe.split("recipe: ", 1)[-1],
        "val_accuracy": val["accuracy"]["value"],
        "val_macro_auc": val["macro_auc"]["value"],
        **_test_numbers(metrics),
        "test_images": metrics["evaluated"]["images"],
        "published": list(PUBLISHED.get(entry.name, ())),
        "train_s": round(trained),
        "total_s": round(time.perf_counter() - start),
    }


def _cell(m: dict[str, Any] | None, digits: int = 3) -> str:
    if not m or m.get("value") is None:
        return "—"
    text = f"{m['value']:.{digits}f}"
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        text += f" [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"
    return text


COLUMNS = (
    "set",
    "val acc",
    "test acc",
    "macro AUC",
    "balanced acc",
    "lowest sensitivity",
    "ECE before -> after (T)",
    "conformal coverage / size",
    "QWK / grade MAE",
    "published",
    "wall",
)


def _row(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [r["set"], r["error"], *["—"] * (len(COLUMNS) - 2)]
    low = r["lowest_sensitivity"]
    kept = {True: "kept", False: "T=1", None: ""}[r["temperature_kept"]]
    published = "; ".join(f"{p['metric']} {p['value']} ({p['source']})" for p in r["published"])
    return [
        f"{r['set']} ({r['modality']})",
        f"{r['val_accuracy']:.3f}",
        _cell(r["accuracy"]),
        _cell(r["macro_auc"]),
        _cell(r["balanced_accuracy"]),
        f"{_cell(low, 2)} {low['class']}",
        f"{r['ece_before']:.3f} -> {_cell(r['ece_after'])} ({r['temperature']:.2f} {kept})",
        f"{_cell(r['conformal_coverage'], 2)} / {_cell(r['mean_set_size'], 2)}",
        f"{_cell(r['quadratic_kappa'])} / {_cell(r['mean_absolute_error'], 2)}",
        published or "none recorded",
        f"{r['total_s'] / 60:.1f} min",
    ]


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Suite at commit {meta['commit']}, budget {meta['budget']}, {meta['machine']}, "
        f"{meta['date']}. Test metrics with 95% bootstrap intervals.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results]
    lines += ["", "Recipe lines:", ""]
    lines += [f"- {r['set']}: {r['recipe']}" for r in results if r.get("recipe")]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    """The CPU model and core count. Read here, not from medclf: the suite also runs an
    earlier medclf (PYTHONPATH=OLD/src) for a before/after table."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} cores"


def _meta(budget: str) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit or "unknown",
        "budget": budget,
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="15m", help="train.time_budget per set (5m to iterate)")
    ap.add_argument("--only", default="", help="comma-separated set names")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "suite")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = ap.parse_args()
    chosen = [s for s in SUITE if not args.only or s.name in args.only.split(",")]
    if not chosen:
        raise SystemExit(
            f"error: --only {args.only}: no such set ({', '.join(s.name for s in SUITE)})"
        )
    meta = _meta(args.budget)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for entry in chosen:
            if not (DATASETS / entry.path).exists():
                print(f"{entry.name}: not found at {DATASETS / entry.path}", flush=True)
                results.append({"set": entry.name, "error": "missing on this machine"})
                continue
            print(f"{entry.name}: training ({args.budget}) and evaluating ...", flush=True)
            try:
                results.append(run_set(entry, work, args.budget))
            except RuntimeError as exc:  # one set failing must not lose the others' rows
                print(f"{entry.name}: {exc}", flush=True)
                results.append({"set": entry.name, "error": str(exc).splitlines()[0]})
    table = markdown(results, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=2))
    print(table)
    print(f"written: {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
