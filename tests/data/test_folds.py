"""k-fold assignment: grouped, stratified, test untouched, refusals that name the class."""

from __future__ import annotations

import pandas as pd
import pytest

from medclf.data.folds import (
    FOLD_COLUMN,
    assign_folds,
    ensemble_table,
    fold_table,
    training_rows,
)
from medclf.data.split import make_splits
from medclf.errors import MedclfError


def _split_table(per_class: int = 60, per_patient: int = 3) -> pd.DataFrame:
    rows = [
        (f"/x/{c}/{i}.png", f"sha-{c}-{i}", c, f"{c}-{i // per_patient}", "")
        for c in ("a", "b")
        for i in range(per_class)
    ]
    table = pd.DataFrame(rows, columns=["path", "sha256", "label", "patient_id", "split"])
    return make_splits(table, [0.7, 0.15, 0.15], seed=0)


def test_folds_keep_patients_together_stratify_and_leave_test_alone():
    table = _split_table()
    folds = assign_folds(table, 4, seed=1)
    test = table["split"] == "test"
    assert (folds[test] == 0).all() and set(folds[~test]) == {1, 2, 3, 4}
    pool = table[~test].assign(fold=folds[~test])
    assert (pool.groupby("patient_id")["fold"].nunique() == 1).all()
    per_fold = pool.groupby(["fold", "label"]).size().unstack()
    assert per_fold.min().min() >= 0.6 * per_fold.max().max()  # stratified: no fold starved
    assert assign_folds(table, 4, seed=1).equals(folds)
    assert not assign_folds(table, 4, seed=2).equals(folds)


def test_explicit_groups_are_respected():
    """The prepared data's groups (near-duplicates, guessed patients) join images that
    share no patient id."""
    table = _split_table(per_patient=1)
    pool = table.index[table["split"] != "test"]
    groups = pd.Series([f"g{i}" for i in range(len(table))], index=table.index)
    joined = list(pool[:10])
    groups.loc[joined] = "one-cluster"
    folds = assign_folds(table, 3, seed=0, groups=groups)
    assert folds.loc[joined].nunique() == 1


def test_fold_and_ensemble_tables():
    table = _split_table()
    folds = assign_folds(table, 3, seed=0)
    second = fold_table(table, folds, 2)
    assert (second.loc[folds == 2, "split"] == "val").all()
    assert (second.loc[folds.isin([1, 3]), "split"] == "train").all()
    assert second.loc[folds == 0, "split"].eq("test").all()
    ensemble = ensemble_table(table, folds)
    assert set(ensemble["split"]) == {"val", "test"}
    assert ensemble.loc[folds == 0, FOLD_COLUMN].eq("").all()
    assert ensemble.loc[folds == 3, FOLD_COLUMN].eq("3").all()
    assert len(training_rows(ensemble)) == int((folds > 0).sum())
    assert training_rows(table).equals(table[table["split"] == "train"])


def test_a_class_with_fewer_patients_than_folds_is_named():
    table = _split_table()
    pool = table["split"] != "test"
    few = pool & (table["label"] == "a")
    table.loc[few, "patient_id"] = [f"a-{i % 4}" for i in range(int(few.sum()))]
    with pytest.raises(MedclfError, match="cv=5: class a has 4 patient"):
        assign_folds(table, 5, seed=0)
    assert set(assign_folds(table, 4, seed=0)[pool]) == {1, 2, 3, 4}


def test_prepared_groups_join_near_duplicates_of_different_patients(tmp_path):
    """What the folds keep together comes from the split's own grouping, near-duplicate
    clusters included (a re-saved copy filed under another patient)."""
    import numpy as np
    from PIL import Image

    from medclf.config import compose
    from medclf.data.prepare import prepare_data
    from medclf.data.synth import generate

    data = tmp_path / "ct"
    generate(data, per_class=12, size=48, seed=1)
    files = sorted((data / "normal").glob("*.png"))
    original, copy = files[0], files[-1]  # two patients' images
    assert original.name.split("_")[0] != copy.name.split("_")[0]
    pixels = np.array(Image.open(original))
    pixels[0, 0] = 255 - pixels[0, 0]  # one pixel changed: a near-duplicate, not identical
    Image.fromarray(pixels).save(copy)
    cfg = compose([f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}"])
    prepared = prepare_data(cfg.data, progress=False, save_memo=False)
    paths = prepared.table["path"].tolist()
    groups = prepared.groups()
    assert groups[paths.index(str(original))] == groups[paths.index(str(copy))]
    assert groups.nunique() < len(groups)
