"""Test accuracy and macro AUC of the previous default against recipe=auto, same machine, one run.

For each dataset, two trainings through the real CLI, each followed by ``medclf evaluate``:

- (a) previous default: ``medclf train data.path=DATA recipe=none`` (custom_cnn at 64 px,
  20 epochs, best by validation loss with patience 5: what a new user got before recipe=auto);
- (b) new default: ``medclf train data.path=DATA`` (recipe=auto, ``train.time_budget=15m``).

Datasets: the public chest-CT set with its published split (recipes are chosen on its
validation split; its test split is only reported here), and synthetic CT phantoms written by
``medclf synth``. Test metrics come with their 95% bootstrap intervals (BCa over images, or
patients where known); the wall time covers training and evaluation. The table is printed at
the end and written to ``--out`` as JSON.

    .venv/bin/python benchmarks/recipes.py [--only chest_ct] [--budget 15m] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medclf.evaluation.model_card import fmt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
CHEST_CT = REPO.parent / "shared" / "datasets" / "chest_ct" / "Data"
VARIANTS = {"previous default": ["recipe=none"], "recipe=auto": []}


def medclf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medclf", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc


def run_variant(data: Path, extra: list[str], work: Path, budget: str) -> dict:
    start = time.perf_counter()
    common = [f"data.path={data}", "runs_root=runs", "logger=[csv]", "train.progress_bar=false"]
    proc = medclf("train", *common, f"train.time_budget={budget}", *extra, cwd=work)
    recipe = next((ln for ln in proc.stderr.splitlines() if "recipe:" in ln), "")
    run = next(ln for ln in proc.stdout.splitlines() if ln.startswith("run: "))[5:].strip()
    trained = time.perf_counter() - start
    quick = ["eval.latency_runs=0", "eval.gradcam_per_class=0"]
    # validation first: it is what recipes are chosen on; test is only reported
    medclf("evaluate", f"model={run}", "split=val", *quick, cwd=work)
    val = json.loads((work / run / "eval" / "val" / "metrics.json").read_text())["overall"]
    medclf("evaluate", f"model={run}", *quick, cwd=work)
    metrics = json.loads((work / run / "eval" / "test" / "metrics.json").read_text())
    overall, per_class = metrics["overall"], metrics["per_class"]
    summary = json.loads((work / run / "train_summary.json").read_text())
    return {
        "val_accuracy": val["accuracy"],
        "val_macro_auc": val["macro_auc"],
        "accuracy": overall["accuracy"],
        "macro_auc": overall["macro_auc"],
        "min_sensitivity": min(pc["sensitivity"]["value"] for pc in per_class.values()),
        "conformal_coverage": (metrics.get("conformal") or {}).get("coverage"),
        "epochs": summary["epochs"],
        "best_epoch": summary["best"].get("epoch"),
        "train_s": round(trained),
        "total_s": round(time.perf_counter() - start),
        "recipe": recipe.split("recipe: ", 1)[-1] if recipe else "",
    }


def synthetic(work: Path) -> Path:
    out = work / "synthetic_ct"
    medclf("synth", str(out), "--per-class", "150", "--size", "128", "--seed", "0", cwd=work)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["chest_ct", "synthetic"], default=None)
    parser.add_argument("--budget", default="15m", help="train.time_budget for both variants")
    parser.add_argument("--out", type=Path, default=Path("recipes-benchmark.json"))
    parser.add_argument("--keep", type=Path, help="keep the run folders here (default: removed)")
    args = parser.parse_args()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sets = {"chest_ct": lambda: CHEST_CT, "synthetic": lambda: synthetic(work)}
        for name, make in sets.items():
            if args.only and name != args.only:
                continue
            data = make()
            if not data.is_dir():
                print(f"{name}: {data} not found, skipped")
                continue
            for variant, extra in VARIANTS.items():
                print(f"{name} / {variant} ...", flush=True)
                results.setdefault(name, {})[variant] = run_variant(data, extra, work, args.budget)
    args.out.write_text(json.dumps(results, indent=2))
    point = lambda m: fmt(m).split()[0]  # noqa: E731 - value without its interval
    print(
        f"{'dataset':<10} {'variant':<17} {'val acc/AUC':<12} {'test accuracy (95% CI)':<26} "
        f"{'macro AUC (95% CI)':<26} {'min sens':>8} {'coverage':>8} {'wall s':>7}"
    )
    # validation and conformal coverage without intervals to keep one line per run
    for name, variants in results.items():
        for variant, r in variants.items():
            val = f"{point(r['val_accuracy'])}/{point(r['val_macro_auc'])}"
            print(
                f"{name:<10} {variant:<17} {val:<12} {fmt(r['accuracy']):<26} "
                f"{fmt(r['macro_auc']):<26} {r['min_sensitivity']:>8.3f} "
                f"{point(r['conformal_coverage']):>8} {r['total_s']:>7}"
            )
    for name, variants in results.items():
        print(f"{name} recipe: {variants['recipe=auto']['recipe']}")


if __name__ == "__main__":
    main()
