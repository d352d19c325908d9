"""Split shift: do the splits (and the classes within them) look alike before any model runs?

On the public chest-CT set the test images are larger and less wide than the training ones,
and "normal" images are 580-620 px wide in every split while the others are about 400: a
model can learn the frame instead of the finding, and validation then promises more than
test delivers. This check says so in plain words.

- Numeric features per image (width, height, aspect, decoded intensity mean and spread): each
  split against train, overall and per class, with the two-sample Kolmogorov-Smirnov
  statistic D as the effect size (the largest gap between the two distributions, 0..1) and
  its p-value. A finding needs both: D >= ``MIN_EFFECT`` and p < ``MAX_P`` (a p-value alone
  flags trivial gaps on large sets; an effect alone flags noise on tiny ones).
- Those p-values hold on exchangeable splits: several images of one patient (or copies and
  near-duplicates of one image: the groups a split keeps together) count as fewer
  independent ones (``medclf.clustered``: each sample at its effective size, with the
  feature's intraclass correlation within train's groups once class means are removed), and
  the check runs many tests (splits x classes x features), so p is Holm-adjusted over all of
  them (family-wise error below ``MAX_P``). Before both corrections, ``make demo``'s random
  patient split was flagged on most seeds (``benchmarks/split_shift_alarms.py``).
- Categorical features (file kind, mode, bit depth): total-variation distance between the
  two splits' shares, finding at >= ``MIN_TV``.
- Size reveals class: within train, the share of the variance of log(image area) explained
  by the class (eta squared, one-way ANOVA); >= ``MIN_ETA2`` means size alone separates classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medclf.clustered import intraclass_correlation, ks, mean_cluster_size
from medclf.data.split import group_keys, with_near_groups

NUMERIC = {
    "width": "width",
    "height": "height",
    "aspect": "aspect (w/h)",
    "intensity_mean": "mean intensity",
    "intensity_std": "intensity spread",
}
CATEGORICAL = ("kind", "mode", "bits")
MIN_EFFECT, MAX_P, MIN_TV, MIN_ETA2 = 0.3, 0.01, 0.2, 0.3
MIN_IMAGES = 8  # fewer images in a group than this: nothing is concluded


def numeric_features(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["split", "label"]].copy()
    for col in ("width", "height", "intensity_mean", "intensity_std"):
        out[col] = pd.to_numeric(df.get(col), errors="coerce") if col in df else np.nan
    out["aspect"] = out["width"] / out["height"].where(out["height"] > 0)
    # each image's cluster: what a split keeps together (its patient, identical files,
    # near-duplicates, a patient guessed from names); an image of its own where none is known
    known = df if "patient_id" in df else df.assign(patient_id="")
    out["cluster"] = group_keys(known).to_numpy()
    return out


def feature_correlations(num: pd.DataFrame) -> dict[str, float]:
    """Per numeric feature, the intraclass correlation of train's images within patients,
    after each class's mean is removed (a patient has one class: class differences are not
    patient similarity). 0 for every feature when no image shares a patient."""
    train = num[num["split"] == "train"]
    if train["cluster"].nunique() == len(train):
        return dict.fromkeys(NUMERIC, 0.0)
    out = {}
    for col in NUMERIC:
        rows = train[["label", "cluster", col]].dropna()
        if len(rows) < MIN_IMAGES:
            out[col] = 0.0
            continue
        residual = rows[col] - rows.groupby("label")[col].transform("mean")
        out[col] = intraclass_correlation(residual.to_numpy(), rows["cluster"].to_numpy())
    return out


def _compare(a: pd.DataFrame, b: pd.DataFrame, col: str, icc: float) -> dict[str, float] | None:
    a, b = a[[col, "cluster"]].dropna(), b[[col, "cluster"]].dropna()
    if len(a) < MIN_IMAGES or len(b) < MIN_IMAGES:
        return None
    effects = [1.0 + (mean_cluster_size(x["cluster"].to_numpy()) - 1.0) * icc for x in (a, b)]
    res = ks(a[col].to_numpy(float), b[col].to_numpy(float), *effects)
    return {
        "ks_d": round(res.statistic, 3),
        "p": res.p_value,
        "median_train": round(float(np.median(a[col])), 3),
        "median_other": round(float(np.median(b[col])), 3),
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    order = np.argsort(p_values)
    m, adjusted, running = len(p_values), np.empty(len(p_values)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _tv(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.astype(str).value_counts(normalize=True), b.astype(str).value_counts(normalize=True)
    keys = pa.index.union(pb.index)
    return float(
        0.5 * np.abs(pa.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0)).sum()
    )


def size_reveals_class(num: pd.DataFrame) -> dict[str, Any] | None:
    train = num[(num["split"] == "train") & (num["width"] > 0) & (num["height"] > 0)]
    if train["label"].nunique() < 2 or len(train) < MIN_IMAGES:
        return None
    area = np.log(train["width"] * train["height"])
    grand = area.mean()
    between = sum(len(g) * (g.mean() - grand) ** 2 for _, g in area.groupby(train["label"]))
    total = float(((area - grand) ** 2).sum())
    # Identical sizes leave only rounding noise in both sums: no size signal at all.
    eta2 = min(1.0, between / total) if total > 1e-9 * len(area) else 0.0
    medians = train.groupby("label")[["width", "height"]].median().astype(int)
    return {
        "eta_squared": round(float(eta2), 3),
        "flagged": bool(eta2 >= MIN_ETA2),
        "median_size": {str(c): f"{r.width}x{r.height}" for c, r in medians.iterrows()},
    }


def numeric_tests(
    num: pd.DataFrame, others: list[str], correlations: dict[str, float]
) -> list[dict[str, Any]]:
    """Every (split, class group, feature) KS test against train, before any threshold;
    ``correlations``: each feature's ICC (``feature_correlations``)."""
    train = num[num["split"] == "train"]
    tests = []
    for split in others:
        part = num[num["split"] == split]
        groups = [("all classes", train, part)] + [
            (c, train[train["label"] == c], part[part["label"] == c])
            for c in sorted(set(part["label"]))
        ]
        for group, a, b in groups:
            for col, label in NUMERIC.items():
                res = _compare(a, b, col, correlations[col])
                if res:
                    tests.append({"split": split, "class": group, "feature": label, **res})
    return tests


def split_shift(
    df: pd.DataFrame, near_pairs: list[tuple[int, int, int]] | None = None
) -> dict[str, Any]:
    """Findings for a table with split, label, patient_id and sha256 (optional) and the
    scan's columns (readable rows); ``near_pairs`` (row positions) join near-duplicates into
    one cluster, as the split does."""
    df = df.reset_index(drop=True)
    if near_pairs:
        df = with_near_groups(df, near_pairs)
    num = numeric_features(df)
    others = [s for s in ("val", "test") if s in set(num["split"])]
    correlations = feature_correlations(num)
    tests = numeric_tests(num, others, correlations)
    for test, adjusted in zip(tests, holm([t["p"] for t in tests]), strict=True):
        test["p_adjusted"] = adjusted
    findings = [t for t in tests if t["ks_d"] >= MIN_EFFECT and t["p_adjusted"] < MAX_P]
    for split in others:
        for col in CATEGORICAL:
            if col in df:
                tv = _tv(df.loc[df["split"] == "train", col], df.loc[df["split"] == split, col])
                if tv >= MIN_TV:
                    findings.append(
                        {"split": split, "class": "all classes", "feature": col, "tv": round(tv, 3)}
                    )
    return {
        "thresholds": {"ks_d": MIN_EFFECT, "p": MAX_P, "tv": MIN_TV, "eta_squared": MIN_ETA2},
        "tests": len(tests),
        "intraclass_correlation": {NUMERIC[k]: round(v, 3) for k, v in correlations.items()},
        "findings": findings,
        "size_reveals_class": size_reveals_class(num),
    }


def shift_lines(shift: dict[str, Any] | None) -> list[str]:
    """Plain-words summary lines (at most one per split, plus the size finding)."""
    if not shift:
        return []
    lines = []
    by_split: dict[str, list[dict[str, Any]]] = {}
    for f in shift["findings"]:
        by_split.setdefault(f["split"], []).append(f)
    for split, items in by_split.items():
        overall = [f for f in items if f["class"] == "all classes"] or items
        shown = []
        for f in sorted(overall, key=lambda f: -f.get("ks_d", f.get("tv", 0)))[:3]:
            if "ks_d" in f:
                shown.append(
                    f"{f['feature']} median {f['median_other']:g} vs {f['median_train']:g} in "
                    f"train (KS D={f['ks_d']:.2f})"
                    + ("" if f["class"] == "all classes" else f" for {f['class']}")
                )
            else:
                shown.append(f"{f['feature']} shares differ (TV {f['tv']:.2f})")
        n_class = len({f["class"] for f in items if f["class"] != "all classes"})
        lines.append(
            f"SPLIT SHIFT {split} differs from train: {'; '.join(shown)}"
            + (f"; {n_class} class(es) differ on their own" if n_class else "")
        )
    size = shift.get("size_reveals_class")
    if size and size["flagged"]:
        sizes = ", ".join(f"{c} {s}" for c, s in size["median_size"].items())
        lines.append(
            f"SIZE REVEALS CLASS in train (eta^2 {size['eta_squared']:.2f}; median {sizes}): "
            "a model can learn the frame instead of the finding; data.trim=foreground and "
            "data.resize=letterbox (what recipe=auto picks for such data) take size away"
        )
    return lines
