"""The recipe on thumbnails: the old rule (64 px, trim the "frame"), the default (64 px, never
trimmed) and the images' own size with the small ResNet stem (``model.stem=small``).

No development-suite set is a thumbnail set, so this one is made from one: chest_ct's published
split, every image reduced to 28 x 28 grayscale as MedMNIST reduces its sources, written to a
temporary folder (never into the repository). Both variants run through the real CLI in the
same process tree, one after the other, at the same budget:

- old rule: ``model=resnet18 data.image_size=64 data.trim=foreground`` (what recipe=auto chose
  for 28 px chest X-rays before: 64 px, trim foreground, the standard stem);
- default: the default command (``medclf train data.path=THUMBS``);
- own size: ``model=resnet18 data.image_size=32 model.stem=small``.

Each is evaluated on validation (what may be chosen on) and on the test split (reported only):
accuracy and macro AUC with 95% intervals, the lowest class sensitivity, the recipe line.

    .venv/bin/python benchmarks/thumbnails.py [--budget 5m] [--size 28]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import DATASETS, QUICK, medclf  # the suite's runner: one copy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
VARIANTS = {
    # model=resnet18 named keeps its packaged standard stem (the recipe leaves a named model be)
    "old rule (64 px, trim)": ["model=resnet18", "data.image_size=64", "data.trim=foreground"],
    "default (64 px, no trim)": [],
    "own size, small stem": ["model=resnet18", "data.image_size=32", "model.stem=small"],
}


def thumbnails(source: Path, out: Path, size: int) -> Path:
    """Every image of ``source`` (split/class/file) as a ``size`` px grayscale PNG."""
    from medclf.data.io import decode

    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        array = decode(str(path)).array
        gray = array if array.ndim == 2 else array.mean(axis=-1)
        img = Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), mode="L")
        target = out / path.relative_to(source).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        img.resize((size, size), Image.Resampling.BOX).save(target)
    return out


def run(data: Path, words: list[str], work: Path, budget: str) -> dict:
    start = time.perf_counter()
    common = [f"data.path={data}", "runs_root=runs", "logger=[csv]", "train.progress_bar=false"]
    proc = medclf("train", *common, f"train.time_budget={budget}", *words, cwd=work)
    recipe = next((ln for ln in proc.stderr.splitlines() if "recipe:" in ln), "")
    folder = next(ln for ln in proc.stdout.splitlines() if ln.startswith("run: "))[5:].strip()
    out = {"recipe": recipe.split("recipe: ", 1)[-1]}
    for split in ("val", "test"):
        medclf("evaluate", f"model={folder}", f"split={split}", *QUICK, cwd=work)
        m = json.loads((work / folder / "eval" / split / "metrics.json").read_text())
        sens = {c: pc["sensitivity"]["value"] for c, pc in m["per_class"].items()}
        out[split] = {
            "accuracy": m["overall"]["accuracy"],
            "macro_auc": m["overall"]["macro_auc"],
            "lowest_sensitivity": min(sens.values()),
        }
    out["total_s"] = round(time.perf_counter() - start)
    return out


def _cell(m: dict) -> str:
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    source = DATASETS / "chest_ct" / "Data"
    if not source.is_dir():
        raise SystemExit(f"error: {source} not found (the development suite's chest_ct)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = thumbnails(source, work / f"chest_ct_{args.size}px", args.size)
        for name, words in VARIANTS.items():
            print(f"{name}: training ({args.budget}) and evaluating ...", flush=True)
            results[name] = run(data, words, work, args.budget)
    print(f"\nchest_ct at {args.size} px, budget {args.budget}, val and test (95% CI):\n")
    print("| rule | val acc | test accuracy | test macro AUC | lowest class sensitivity | wall |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        t = r["test"]
        print(
            f"| {name} | {r['val']['accuracy']['value']:.3f} | {_cell(t['accuracy'])} | "
            f"{_cell(t['macro_auc'])} | {t['lowest_sensitivity']:.2f} | {r['total_s']} s |"
        )
    for name, r in results.items():
        print(f"\n{name}: {r['recipe']}")


if __name__ == "__main__":
    main()
