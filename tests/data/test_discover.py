from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclf.data.discover import DiscoverOptions, canonical_class_names, discover
from medclf.data.pseudonym import load_key, pseudonym
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
    # manifest ids are replaced by the project's keyed pseudonyms (medclf.data.pseudonym)
    key = load_key()
    assert list(df["patient_id"]) == [pseudonym("p1", key), pseudonym("p2", key)]
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


def _medmnist(path: Path, rgb: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 6)):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(n, 1)
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_keeps_its_splits_and_names_classes(tmp_path: Path):
    from medclf.data.discover import DiscoverOptions
    from medclf.data.io import decode, sample_sha256

    npz = _medmnist(tmp_path / "pneumoniamnist.npz")
    opts = DiscoverOptions(class_map={"0": "normal", "1": "viral", "2": "bacterial"})
    for target in (npz, tmp_path):  # the file, or a folder holding exactly one
        df = discover(target, opts)
        assert df.groupby("split").size().to_dict() == {"test": 6, "train": 20, "val": 6}
        assert sorted(df["label"].unique()) == ["bacterial", "normal", "viral"]
    third_val = df[df["split"] == "val"].iloc[2]["path"]
    assert third_val.endswith("::val_images[2]")
    d = decode(third_val)
    np.testing.assert_allclose(d.array, np.load(npz)["val_images"][2] / 255.0, atol=1e-7)
    assert d.kind == "npz" and d.mode == "L"
    assert sample_sha256(df.iloc[0]["path"]) != sample_sha256(df.iloc[1]["path"])


def test_npz_without_medmnist_keys_is_a_clear_error(tmp_path: Path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(MedclfError, match=r"x\.npz: no <split>_images"):
        discover(tmp_path / "x.npz")


def test_manifest_metadata_columns_are_kept_and_columns_can_be_renamed(tmp_path: Path):
    from medclf.data.discover import DiscoverOptions

    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    pd.DataFrame(
        {
            "file": [f"{i}.png" for i in range(4)],
            "finding": ["a", "b", "a", "b"],
            "subject": ["s1", "s1", "s2", "s3"],
            "sex": ["F", "F", "M", "M"],
            "site": ["x", "x", "y", "y"],
        }
    ).to_csv(tmp_path / "meta.csv", index=False)
    opts = DiscoverOptions(columns={"path": "file", "label": "finding", "patient_id": "subject"})
    df = discover(tmp_path / "meta.csv", opts)
    assert list(df.columns) == ["path", "label", "patient_id", "split", "sex", "site"]
    key = load_key()
    assert df["patient_id"].tolist() == [pseudonym(s, key) for s in ("s1", "s1", "s2", "s3")]
    with pytest.raises(MedclfError, match=r"column\(s\) \['img'\] named in data.columns"):
        discover(tmp_path / "meta.csv", DiscoverOptions(columns={"path": "img"}))


def test_label_pattern_reads_labels_from_file_names(tmp_path: Path):
    from medclf.data.discover import DiscoverOptions

    for i, tag in enumerate(["POS", "NEG", "POS", "NEG"]):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / f"case{i}_{tag}.png")
    df = discover(tmp_path, DiscoverOptions(label_pattern=r"_(POS|NEG)\."))
    assert sorted(df["label"]) == ["NEG", "NEG", "POS", "POS"]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "other.png")
    with pytest.raises(MedclfError, match=r"1 file name.*other\.png"):
        discover(tmp_path, DiscoverOptions(label_pattern=r"_(POS|NEG)\."))


def _xray_like(root: Path) -> None:
    """Kaggle chest X-ray naming: the patient is the prefix before the first underscore."""
    for split in ("train", "test"):
        for i in range(6):
            _img(root / split / "PNEUMONIA" / f"person{i}{split[:2]}_bacteria_{i}.jpeg", 40 + i)
            _img(root / split / "PNEUMONIA" / f"person{i}{split[:2]}_virus_{i + 50}.jpeg", 90 + i)
            _img(root / split / "NORMAL" / f"IM-{i}{split[:2]}-0001.jpeg", 150 + i)


def test_patient_pattern_reads_patients_from_file_names(tmp_path: Path):
    _xray_like(tmp_path / "xray")
    opts = DiscoverOptions(patient_pattern=r"^(person\d+[a-z]+|IM-\d+[a-z]+)")
    df = discover(tmp_path / "xray", opts)
    keyed = df.assign(name=df["path"].map(lambda p: Path(p).name))
    both = keyed[keyed["name"].str.startswith("person1tr_")]
    assert len(both) == 2 and both["patient_id"].nunique() == 1
    assert both["patient_id"].iloc[0] not in ("", "person1tr")  # keyed, never the raw id
    assert df["patient_id"].nunique() == 24


def test_patient_pattern_that_misses_files_is_an_error(tmp_path: Path):
    _xray_like(tmp_path / "xray")
    with pytest.raises(MedclfError, match=r"do not match data\.patient_pattern.*IM-"):
        discover(tmp_path / "xray", DiscoverOptions(patient_pattern=r"^(person\d+)"))
    with pytest.raises(MedclfError, match="capture group"):
        discover(tmp_path / "xray", DiscoverOptions(patient_pattern=r"^person"))


def test_a_wrapper_folder_is_descended_and_said(tmp_path: Path, caplog):
    _xray_like(tmp_path / "download" / "chest_xray")
    (tmp_path / "download" / ".DS_Store").write_bytes(b"x")
    with caplog.at_level("INFO", logger="medclf"):
        df = discover(tmp_path / "download")
    assert set(df["split"]) == {"train", "test"} and len(df) == 36
    assert "holds only" in caplog.text and "chest_xray" in caplog.text
    # a root holding only train/ is a split layout, not a wrapper
    _img(tmp_path / "only" / "train" / "a" / "1.png")
    _img(tmp_path / "only" / "train" / "b" / "1.png", 7)
    assert set(discover(tmp_path / "only")["split"]) == {"train"}


@pytest.mark.parametrize(
    "row",
    [
        "../../../../etc/passwd",
        "/etc/shadow",
        "/proc/self/environ",
        "../outside/a.png",
        "link/a.png",
    ],
    ids=["dotdot-passwd", "absolute-shadow", "proc-environ", "real-image-via-dotdot", "symlink"],
)
def test_manifest_rows_stay_inside_the_data_folder(tmp_path: Path, row: str) -> None:
    """A manifest from someone else cannot reach files outside its folder (#31)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside / "a.png")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link").symlink_to(outside)
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(data / f"{i}.png")
    rows = ["path,label", *(f"{i}.png,{'ab'[i % 2]}" for i in range(4)), f"{row},a"]
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(MedclfError, match=r"row 6: path .* resolves outside .*allow_outside_root"):
        discover(data / "manifest.csv")
    if row in ("../outside/a.png", "link/a.png"):  # a real image: allowed when asked for
        table = discover(data / "manifest.csv", DiscoverOptions(allow_outside_root=True))
        assert str((outside / "a.png").resolve()) in set(table["path"])
