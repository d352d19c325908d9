"""How often the data check's SPLIT SHIFT warning fires on splits that differ only by chance
(false alarms), and whether it still fires on a split that really differs (power).

False alarms: ``--seeds`` seeded random re-splits (70/15/15, keeping patients, identical files
and near-duplicates together, as medclf splits) of (a) the demo's phantoms (600 images,
several per patient) and (b) chest_ct's published train split alone (613 images; its
"normal" class is mostly copies of the same scans). Every re-split is exchangeable,
so each warning is a false alarm. Power: chest_ct's published splits, whose test images are
larger and brighter than train's. Each rate comes with a Clopper-Pearson 95% interval, for
the check as shipped and for the same tests uncorrected (images counted as independent, each
test at p < 0.01 alone: the check before the correction).

    .venv/bin/python benchmarks/split_shift_alarms.py [--seeds 50] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import binomtest

from medclf.config import compose
from medclf.data.check import near_duplicate_pairs
from medclf.data.prepare import prepare_data
from medclf.data.shift import (
    MAX_P,
    MIN_EFFECT,
    NUMERIC,
    numeric_features,
    numeric_tests,
    split_shift,
)
from medclf.data.split import NAME_GROUP, NEAR_GROUP, assign_splits, with_near_groups
from medclf.data.synth import generate

REPO = Path(__file__).resolve().parents[1]
CHEST_CT = REPO.parent / "shared" / "datasets" / "chest_ct" / "Data"
RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
SCANNED = ("width", "height", "intensity_mean", "intensity_std", "kind", "mode", "bits")
NEAR = 10  # data.near_duplicate_distance's default


def scanned_table(folder: Path, runs: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The folder's images with their split, label, patient and scanned facts; and the scan."""
    cfg = compose([f"data.path={folder}", f"runs_root={runs}"])
    prepared = prepare_data(cfg.data, progress=False)
    scanned = prepared.scanned.reset_index(drop=True)
    table = prepared.table.reset_index(drop=True)[
        ["path", "label", "patient_id", "sha256", "split"]
    ]
    return pd.concat([table, scanned[list(SCANNED)]], axis=1), scanned


def near_pairs(table: pd.DataFrame, scanned: pd.DataFrame) -> list[tuple[int, int, int]]:
    """Near-duplicate pairs over the table's rows (any splits), as medclf's split uses them."""
    return near_duplicate_pairs(
        scanned["phash"],
        table["split"],
        table["sha256"],
        NEAR,
        across_splits_only=False,
        orbit=scanned["phash_orbit"],
    )


def flags(df: pd.DataFrame, pairs: list[tuple[int, int, int]]) -> dict[str, bool]:
    """Whether the shipped check warns, and whether the uncorrected one would have."""
    others = [s for s in ("val", "test") if s in set(df["split"])]
    alone = df.assign(patient_id="").drop(
        columns=["sha256", NEAR_GROUP, NAME_GROUP], errors="ignore"
    )
    naive = numeric_tests(numeric_features(alone), others, dict.fromkeys(NUMERIC, 0.0))
    return {
        "corrected": bool(split_shift(df, pairs)["findings"]),
        "uncorrected": any(t["ks_d"] >= MIN_EFFECT and t["p"] < MAX_P for t in naive),
    }


def alarm_rate(table: pd.DataFrame, scanned: pd.DataFrame, seeds: int) -> dict[str, Any]:
    """Re-split ``seeds`` times, keeping patients, copies and near-duplicates together."""
    classes = sorted(table["label"].unique())
    pairs = near_pairs(table, scanned)
    grouped = with_near_groups(table, pairs)
    runs = []
    for seed in range(seeds):
        resplit = table.assign(split=assign_splits(grouped, RATIOS, seed, classes).to_numpy())
        runs.append(flags(resplit, pairs))
    return {kind: rate(sum(r[kind] for r in runs), seeds) for kind in ("corrected", "uncorrected")}


def rate(hits: int, n: int) -> dict[str, Any]:
    ci = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return {"flagged": hits, "of": n, "rate": hits / n, "ci95": [ci.low, ci.high]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {"seeds": args.seeds}
    with tempfile.TemporaryDirectory(prefix="split-shift-") as tmp:
        phantoms = Path(tmp) / "phantoms"
        generate(phantoms, per_class=150, size=128, seed=0)  # make demo's set
        table, scanned = scanned_table(phantoms, Path(tmp) / "runs")
        out["phantoms"] = alarm_rate(table, scanned, args.seeds)
        if CHEST_CT.is_dir():
            published, scanned = scanned_table(CHEST_CT, Path(tmp) / "runs")
            out["chest_ct_published"] = flags(published, near_pairs(published, scanned))
            train = (published["split"] == "train").to_numpy()
            out["chest_ct_train"] = alarm_rate(
                published[train].reset_index(drop=True),
                scanned[train].reset_index(drop=True),
                args.seeds,
            )
        else:
            out["chest_ct"] = f"missing: {CHEST_CT}"
    for name in ("phantoms", "chest_ct_train"):
        if name in out:
            for kind, r in out[name].items():
                low, high = r["ci95"]
                print(
                    f"{name:15s} {kind:11s} false alarms {r['flagged']:2d}/{r['of']} "
                    f"= {r['rate']:.2f} [{low:.2f}, {high:.2f}]"
                )
    if "chest_ct_published" in out:
        print(f"chest_ct published splits flagged: {out['chest_ct_published']}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
