from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclf.data.discover import canonical_class_names, discover
from medclf.errors import MedclfError
from tests.conftest import CHEST_CT


def _img(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


@pytest.mark.skipif(not CHEST_CT.is_dir(), reason="shared chest_ct dataset not present")
def test_chest_ct_long_and_short_class_names_are_one_class_in_every_split():
    df = discover(CHEST_CT)
    expected = {"adenocarcinoma", "large.cell.carcinoma", "normal", "squamous.cell.carcinoma"}
    for split in ("train", "val", "test"):
        assert set(df.loc[df["split"] == split, "label"]) == expected
    counts = df.groupby(["split", "label"]).size()
    # numbers from the dataset's README table
    assert counts[("train", "adenocarcinoma")] == 195
    assert counts[("val", "large.cell.carcinoma")] == 21
    assert counts[("test", "squamous.cell.carcinoma")] == 90
    assert len(df) == 1000


def test_prefix_matching_rules():
    mapping = canonical_class_names(
        {
            "train": {"adeno_left.lobe_T2", "normal", "ground_glass"},
            "test": {"adeno", "normal", "ground_glass"},
        }
    )
    assert mapping["adeno_left.lobe_T2"] == "adeno"
    assert mapping["ground_glass"] == "ground_glass"  # no shorter name to merge into
    # names that occur together in one split are distinct classes, never merged
    same_split = canonical_class_names({"train": {"ground", "ground_glass"}})
    assert same_split == {"ground": "ground", "ground_glass": "ground_glass"}


def test_presplit_and_flat_layouts(tmp_path: Path):
    for split in ("train", "valid", "test"):
        for cls in ("a", "b"):
            _img(tmp_path / "pre" / split / cls / f"{split}{cls}.png")
    df = discover(tmp_path / "pre")
    assert sorted(df["split"].unique()) == ["test", "train", "val"]
    for cls in ("a", "b"):
        for i in range(3):
            _img(tmp_path / "flat" / cls / f"{i}.png")
    flat = discover(tmp_path / "flat")
    assert set(flat["split"]) == {""} and len(flat) == 6


def test_manifest_relative_paths_and_patient_ids(tmp_path: Path):
    _img(tmp_path / "imgs" / "x.png")
    _img(tmp_path / "imgs" / "y.png")
    (tmp_path / "manifest.csv").write_text(
        "path,label,patient_id\nimgs/x.png,a,p1\nimgs/y.png,b,p2\n"
    )
    df = discover(tmp_path)
    assert list(df["patient_id"]) == ["p1", "p2"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "no such file or folder"),
        (lambda root: root.mkdir(), "folder is empty"),
        (lambda root: _img(root / "only" / "1.png"), "only one class"),
        (lambda root: (_img(root / "a" / "1.png"), (root / "b").mkdir()), "has no images"),
        (lambda root: _img(root / "loose.png"), "one sub-folder per class"),
        (
            lambda root: (root.mkdir(), (root / "manifest.csv").write_text("file,y\n1,2\n")),
            "needs columns path,label",
        ),
    ],
    ids=["missing", "empty", "one-class", "empty-class-folder", "loose-images", "bad-manifest"],
)
def test_bad_layouts_name_the_path(tmp_path: Path, setup, message: str):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(MedclfError, match=message) as info:
        discover(root)
    assert str(root) in str(info.value)  # the message names the offending path
