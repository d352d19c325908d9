from pathlib import Path

import pandas as pd
import pytest

from medclf.data.split import load_split, make_splits, save_split
from medclf.errors import MedclfError


def _table(n_per_class: int, classes=("a", "b", "c"), per_patient: int = 1) -> pd.DataFrame:
    rows = []
    for c in classes:
        for i in range(n_per_class):
            rows.append(
                (f"/x/{c}/{i}.png", c, f"{c}-{i // per_patient}" if per_patient > 1 else "", "")
            )
    return pd.DataFrame(rows, columns=["path", "label", "patient_id", "split"])


def test_stratified_ratios_and_determinism():
    df = make_splits(_table(100), [0.7, 0.15, 0.15], seed=42)
    counts = df.groupby(["label", "split"]).size().unstack()
    assert (
        (counts["train"] == 70).all()
        and (counts["val"] == 15).all()
        and (counts["test"] == 15).all()
    )
    again = make_splits(_table(100), [0.7, 0.15, 0.15], seed=42)
    other = make_splits(_table(100), [0.7, 0.15, 0.15], seed=7)
    assert df["split"].tolist() == again["split"].tolist()
    assert df["split"].tolist() != other["split"].tolist()


def test_patients_never_straddle_splits():
    df = make_splits(_table(90, per_patient=3), [0.7, 0.15, 0.15], seed=1)
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    frac = df["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.05 and abs(frac["test"] - 0.15) < 0.05


def test_presplit_without_val_carves_val_from_train_only():
    df = _table(40)
    df["split"] = ["test" if i % 5 == 0 else "train" for i in range(len(df))]
    out = make_splits(df, [0.7, 0.15, 0.15], seed=0)
    assert (out.loc[df["split"] == "test", "split"] == "test").all()
    assert set(out["split"]) == {"train", "val", "test"}


def test_too_few_images_for_a_split_is_a_clear_error():
    with pytest.raises(MedclfError, match=r"class a: 1 image\(s\), but the train/val/test"):
        make_splits(_table(1, classes=("a", "b")), [0.7, 0.15, 0.15], seed=0)


def test_split_file_round_trip(tmp_path: Path):
    files = []
    for i in range(4):
        f = tmp_path / f"{i}.png"
        f.write_bytes(bytes([i]) * 10)
        files.append(str(f))
    df = pd.DataFrame(
        {
            "path": files,
            "label": ["a", "b", "a", "b"],
            "patient_id": "",
            "split": ["train", "train", "val", "test"],
        }
    )
    written = save_split(df, tmp_path / "split.csv")
    assert written["sha256"].nunique() == 4 and written["sha256"].str.len().eq(64).all()
    back = load_split(tmp_path / "split.csv")
    assert back["path"].tolist() == files and back["split"].tolist() == df["split"].tolist()
    Path(files[0]).unlink()
    with pytest.raises(MedclfError, match="no longer exists"):
        load_split(tmp_path / "split.csv")


def test_one_giant_duplicate_group_is_explained():
    df = _table(10, classes=("a", "b"))
    df["sha256"] = [f"h{i}" for i in range(len(df))]
    df["_near_group"] = "n0"  # e.g. blank images: every one near-duplicates every other
    with pytest.raises(MedclfError, match=r"20 of 20 images form one group.*near_duplicate"):
        make_splits(df, [0.7, 0.15, 0.15], seed=0)


def test_a_class_whose_patients_cannot_fill_every_split_is_named():
    # three images of class "b" but all from one patient: they cannot reach val and test
    df = _table(10, classes=("a",))
    extra = pd.DataFrame(
        {"path": ["b0", "b1", "b2"], "label": "b", "patient_id": "pb", "split": ""}
    )
    with pytest.raises(MedclfError, match=r"class b: fewer than 1 image\(s\) in the"):
        make_splits(pd.concat([df, extra], ignore_index=True), [0.7, 0.15, 0.15], seed=0)
