"""Patient-grouped, stratified k-fold assignment of the training data (``medclf train cv=K``).

The folds are drawn from the train and val rows of the prepared split; the test rows are
never touched, so the ensemble is tested on exactly the images a single run would be.
scikit-learn's ``StratifiedGroupKFold`` does this job; the groups are the split's own
(``split.group_keys``: patients, identical and near-duplicate images, names), so no patient
or duplicate straddles two folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medclf.data.split import group_keys
from medclf.errors import MedclfError

FOLD_COLUMN = "cv_fold"  # split.csv of a fold ensemble: the fold that validated each image


def assign_folds(
    table: pd.DataFrame, folds: int, seed: int, groups: pd.Series | None = None
) -> pd.Series:
    """Fold number 1..``folds`` of each train/val row of ``table``; 0 for test rows. Every
    fold validates every class (refused otherwise, naming the class). ``groups``: each
    row's group (``PreparedData.groups``), else patients and identical images."""
    from sklearn.model_selection import StratifiedGroupKFold

    pool = table[table["split"] != "test"]
    groups = (group_keys(table) if groups is None else groups).loc[pool.index]
    for label, rows in pool.groupby("label"):
        n_groups = groups.loc[rows.index].nunique()
        if n_groups < folds:
            raise MedclfError(
                f"cv={folds}: class {label} has {n_groups} patient(s) or image group(s) in the "
                f"train and val splits, fewer than the {folds} folds that must each validate "
                "it; lower cv or add images of this class"
            )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assigned = pd.Series(0, index=table.index, dtype=np.int64)
    for k, (_, val_idx) in enumerate(splitter.split(pool, pool["label"], groups), start=1):
        assigned.loc[pool.index[val_idx]] = k
    for k in range(1, folds + 1):
        missing = set(pool["label"]) - set(pool.loc[assigned.loc[pool.index] == k, "label"])
        if missing:
            raise MedclfError(
                f"cv={folds}: fold {k} has no validation images of class "
                f"{', '.join(sorted(missing))} (its patients are too few to spread over "
                f"{folds} folds); lower cv or add images of that class"
            )
    return assigned


def fold_table(table: pd.DataFrame, assigned: pd.Series, k: int) -> pd.DataFrame:
    """The split of fold ``k``: its images validate, the other folds' train, test unchanged."""
    out = table.copy()
    pool = assigned > 0
    out.loc[pool, "split"] = np.where(assigned[pool] == k, "val", "train")
    return out


def ensemble_table(table: pd.DataFrame, assigned: pd.Series) -> pd.DataFrame:
    """The ensemble's split: every train/val image is validation (each was predicted by the
    one fold that did not train on it; ``evaluate`` reads ``cv_fold`` for that), test as is."""
    out = table.copy()
    pool = assigned > 0
    out.loc[pool, "split"] = "val"
    out[FOLD_COLUMN] = [str(int(k)) if k else "" for k in assigned]
    return out


def training_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a run's split.csv that trained it: its train split, or for a fold
    ensemble every image some fold trained on (those with a ``cv_fold``)."""
    trained = table["split"] == "train"
    if FOLD_COLUMN in table:
        trained |= table[FOLD_COLUMN].astype(str).ne("")
    return table[trained]
