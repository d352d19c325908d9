"""Stratified, patient-grouped train/val/test splits and the ``split.csv`` manifest.

scikit-learn has ratio-based stratified splits (``train_test_split``) and grouped k-fold
(``StratifiedGroupKFold``), but nothing that does both at arbitrary ratios such as 70/15/15.
So groups (patients; each image alone when there are no patient ids) are assigned greedily:
in a seeded random order, largest groups first, each goes to the split whose per-class
shortfall against its target is largest. One algorithm for grouped and ungrouped data keeps
the split deterministic for a seed and never puts a patient in two splits.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.atomic import atomic_path
from medclf.data.discover import COLUMNS, SPLITS
from medclf.data.io import sample_sha256
from medclf.errors import MedclfError

SPLIT_COLUMNS = ["path", "sha256", "label", "patient_id", "split"]
NEAR_GROUP = "_near_group"  # near-duplicate cluster id, set by medclf.data.prepare
NAME_GROUP = "_name_group"  # patient guessed from the file name (data.name_ids), ditto


def connected_groups(n: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Component label per item 0..n-1 of the graph whose edges are ``pairs``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def group_keys(df: pd.DataFrame) -> pd.Series:
    """Group key per row: rows sharing a patient id, identical content (``sha256``), a
    near-duplicate cluster (``_near_group``) or a patient guessed from file names
    (``_name_group``), when known, are one group, transitively, so neither a patient nor a
    duplicated image can end up in two splits. A row with none of these is its own group."""
    optional = [c for c in ("sha256", NEAR_GROUP, NAME_GROUP) if c in df.columns]
    pairs: list[tuple[int, int]] = []
    for col in ["patient_id", *optional]:
        values = df[col].astype(str).to_numpy()
        first: dict[str, int] = {}
        for i, value in enumerate(values):
            if value:
                pairs.append((first.setdefault(value, i), i))
    labels = connected_groups(len(df), pairs)
    return pd.Series([f"g{k}" for k in labels], index=df.index)


def with_near_groups(table: pd.DataFrame, pairs: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Label near-duplicate clusters (``pairs`` of row positions) so the split keeps each
    cluster in one split, as it does for patients and identical files."""
    keys = connected_groups(len(table), [(i, j) for i, j, _ in pairs])
    sizes = pd.Series(keys).value_counts()
    return table.assign(**{NEAR_GROUP: [f"n{k}" if sizes[k] > 1 else "" for k in keys]})


def assign_splits(
    df: pd.DataFrame, ratios: dict[str, float], seed: int, classes: list[str]
) -> pd.Series:
    """A split name per row of ``df`` for the splits named in ``ratios``."""
    names = [s for s in SPLITS if ratios.get(s, 0) > 0]
    weights = np.array([ratios[s] for s in names], dtype=float)
    if len(names) == 0 or np.any(weights < 0):
        raise MedclfError("data.split_ratios must be non-negative with at least one positive")
    weights = weights / weights.sum()
    class_idx = {c: i for i, c in enumerate(classes)}
    groups = group_keys(df)
    table = pd.crosstab(groups, df["label"].map(class_idx)).reindex(
        columns=range(len(classes)), fill_value=0
    )
    counts = table.to_numpy(dtype=float)
    group_names = table.index.to_numpy()
    totals = counts.sum(axis=0)
    targets = weights[:, None] * totals[None, :]
    current = np.zeros_like(targets)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(group_names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    assignment: dict[str, str] = {}
    safe_totals = np.where(totals > 0, totals, 1.0)
    for g in order:
        need = ((targets - current) * counts[g][None, :] / safe_totals).sum(axis=1)
        best = int(np.argmax(need + 1e-9 * weights))  # ties -> the larger split
        current[best] += counts[g]
        assignment[group_names[g]] = names[best]
    return groups.map(assignment)


def make_splits(
    df: pd.DataFrame, ratios: list[float], seed: int, min_per_class: int = 1
) -> pd.DataFrame:
    """Fill in missing splits: all of them for unsplit data, or val/test carved from train.
    Every split made here must hold at least ``min_per_class`` images of every class."""
    if len(ratios) != 3:
        raise MedclfError("data.split_ratios needs three numbers: train, val, test")
    by_name = dict(zip(SPLITS, (float(r) for r in ratios), strict=True))
    classes = sorted(df["label"].unique())
    df = df.copy()
    present = set(df["split"]) - {""}
    made: list[str] = []
    if not present:
        made = list(SPLITS)
        _check_class_sizes(df, classes, made, min_per_class)
        df["split"] = assign_splits(df, by_name, seed, classes)
    elif "" in set(df["split"]):
        raise MedclfError(
            "the manifest gives a split for some rows but not others; fill the split column "
            "for every row or leave it empty everywhere"
        )
    else:
        missing = [s for s in ("val", "test") if s not in present]
        if missing:
            train = df[df["split"] == "train"]
            made = ["train", *missing]
            _check_class_sizes(train, classes, made, min_per_class)
            carve = {"train": by_name["train"], **{s: by_name[s] for s in missing}}
            df.loc[train.index, "split"] = assign_splits(train, carve, seed, classes)
    check_splits(df, classes, group_keys(df).value_counts().iloc[0])
    _check_class_sizes(df, classes, made, min_per_class, assigned=True)
    return df


def _check_class_sizes(
    df: pd.DataFrame, classes: list[str], made: list[str], minimum: int, assigned: bool = False
) -> None:
    """Refuse a class too small for the splits medclf makes: with one image it would land
    in train only and every validation metric of it would be meaningless."""
    if not made:
        return
    needed = minimum * len(made)
    for c in classes:
        rows = df[df["label"] == c]
        if not assigned and len(rows) < needed:
            raise MedclfError(
                f"class {c}: {len(rows)} image(s), but the {'/'.join(made)} split(s) medclf "
                f"makes need at least {minimum} each ({needed} in all, in separate patients); "
                "add images of this class, remove it, or lower data.min_images_per_class"
            )
        if assigned:
            short = [s for s in made if int((rows["split"] == s).sum()) < minimum]
            if short:
                raise MedclfError(
                    f"class {c}: fewer than {minimum} image(s) in the {', '.join(short)} "
                    f"split(s) ({len(rows)} images in all; images of one patient or "
                    "near-identical images stay together); add images of this class from "
                    "other patients, or remove it"
                )


def check_splits(df: pd.DataFrame, classes: list[str], largest_group: int = 1) -> None:
    for split in SPLITS:
        part = df[df["split"] == split]
        if part.empty:
            hint = ""
            if largest_group > 1:
                hint = (
                    f"; {largest_group} of {len(df)} images form one group (same patient, "
                    "identical or near-duplicate content) that must stay in one split - check "
                    "for blank or repeated images, or lower data.near_duplicate_distance "
                    "(-1 turns near-duplicate grouping off)"
                )
            raise MedclfError(
                f"the {split} split is empty; add images or adjust data.split_ratios{hint}"
            )
    train_classes = set(df.loc[df["split"] == "train", "label"])
    absent = sorted(set(classes) - train_classes)
    if absent:
        raise MedclfError(
            f"class(es) {', '.join(absent)} have no training images; "
            "add training images or remove the class"
        )


def metadata_columns(df: pd.DataFrame) -> list[str]:
    """Columns beyond the standard ones: manifest metadata such as sex, age or site."""
    return [c for c in df.columns if c not in SPLIT_COLUMNS and c not in COLUMNS]


def save_split(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Write ``split.csv`` (path, sha256, label, patient_id, split, then any metadata columns);
    returns the written table."""
    out = df.copy()
    if "sha256" not in out.columns:
        out["sha256"] = [sample_sha256(p) for p in out["path"]]
    out = out[SPLIT_COLUMNS + [c for c in metadata_columns(out) if not c.startswith("_")]]
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)
    return out


def load_split(path: str | Path) -> pd.DataFrame:
    """Read a ``split.csv`` to reproduce a split; every listed file must still exist unchanged."""
    path = Path(path)
    if not path.is_file():
        raise MedclfError(f"data.split_file={path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedclfError(
            f"data.split_file={path}: not a medclf split.csv ({first}); give the split.csv "
            "of an earlier run"
        ) from None
    missing = set(SPLIT_COLUMNS) - set(df.columns)
    if missing:
        raise MedclfError(f"{path}: not a medclf split.csv (missing {', '.join(sorted(missing))})")
    gone = [p for p in df["path"] if not Path(p.split("::", 1)[0]).is_file()]
    if gone:
        raise MedclfError(f"{path}: listed image no longer exists: {gone[0]}")
    return df[SPLIT_COLUMNS + metadata_columns(df)]
