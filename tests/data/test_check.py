"""The data check on real chest CT and on a dataset built to contain every problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclf.config import compose
from medclf.data.check import _every_pair, _hash_words, near_duplicate_pairs
from medclf.data.prepare import prepare_data
from tests.conftest import CHEST_CT, medclf, printed_run


def _phantom(seed: int, size: int = 64) -> np.ndarray:
    """A distinct smooth image per seed (pHash-distinct, unlike random noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(4):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        r = rng.uniform(0.05, 0.25)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
    return (255 * img / img.max()).astype(np.uint8)


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def troubled(tmp_path: Path) -> Path:
    """Pre-split tree with known problems: a cross-split exact duplicate, a near-duplicate
    across splits, one image under two labels, a within-split duplicate, and broken files."""
    root = tmp_path / "troubled"
    seed = 0
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                seed += 1
                _save(root / split / cls / f"{i}.png", _phantom(seed))
    dup = (root / "train" / "a" / "0.png").read_bytes()
    (root / "test" / "a" / "dup_of_train_a0.png").write_bytes(dup)  # exact, across splits
    (root / "train" / "b" / "conflict.png").write_bytes(dup)  # same content, label b
    near = _phantom(1).astype(int)
    near[:2, :2] += 3  # tiny edit: near-duplicate, not exact
    _save(root / "val" / "a" / "near_train_a0.png", np.clip(near, 0, 255).astype(np.uint8))
    (root / "train" / "a" / "zero.png").write_bytes(b"")
    png = (root / "train" / "b" / "1.png").read_bytes()
    (root / "train" / "b" / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "val" / "b" / "garbage.png").write_bytes(b"not an image at all")
    return root


def test_check_finds_every_planted_problem(troubled: Path, tmp_path: Path):
    cfg = compose([f"data.path={troubled}", f"runs_root={tmp_path / 'runs'}"])
    report = prepare_data(cfg.data, progress=False).report
    unreadable = {Path(u["path"]).name for u in report["unreadable"]}
    assert unreadable == {"zero.png", "truncated.png", "garbage.png"}
    assert all(u["reason"] for u in report["unreadable"])
    ex = report["exact_duplicates"]
    assert ex["groups_across_splits"] == 1
    names = {Path(f["path"]).name for g in ex["groups"] for f in g["files"]}
    assert names == {"0.png", "dup_of_train_a0.png", "conflict.png"}
    assert report["label_conflict_count"] == 1
    assert report["label_conflicts"][0]["labels"] == ["a", "b"]
    near = report["near_duplicates"]["pairs"]
    assert any(
        {Path(p["a"]["path"]).name, Path(p["b"]["path"]).name} == {"near_train_a0.png", "0.png"}
        for p in near
    )
    assert report["leakage"] is True and report["passed"] is False
    assert report["counts"]["train"] == {"a": 7, "b": 8}  # unreadable files still counted
    assert report["readable"] == report["files"] - 3


def test_check_cli_writes_json_and_strict_exits_nonzero(troubled: Path, tmp_path: Path):
    out = tmp_path / "report" / "check.json"
    args = ["data", "check", str(troubled), f"runs_root={tmp_path}", "--out", str(out)]
    lenient = medclf(*args)
    assert lenient.returncode == 0, lenient.stderr
    assert "LEAKAGE exact duplicates across splits: 1" in lenient.stdout
    assert "LABEL CONFLICT" in lenient.stdout and "unreadable files: 3" in lenient.stdout
    assert json.loads(out.read_text())["label_conflict_count"] == 1
    strict = medclf(*args, "--strict")
    assert strict.returncode == 1
    assert "Traceback" not in strict.stderr


def test_train_excludes_unreadable_files_and_refuses_leakage_when_strict(
    troubled: Path, tmp_path: Path
):
    common = [f"data.path={troubled}", "data.image_size=32", "train.progress_bar=false"]
    refused = medclf("train", *common, "data.strict=true", "runs_root=strict", cwd=tmp_path)
    assert refused.returncode == 2
    assert "data.strict=true" in refused.stderr and "LEAKAGE" in refused.stderr
    assert not (tmp_path / "strict").exists()

    ok = medclf("train", *common, "train.max_epochs=1", "runs_root=runs", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "3 unreadable file(s) excluded" in ok.stderr
    run = printed_run(ok, tmp_path)
    split = pd.read_csv(run / "split.csv")
    assert not split["path"].str.contains("zero.png|truncated.png|garbage.png").any()
    assert json.loads((run / "data_check.json").read_text())["label_conflict_count"] == 1


def test_near_duplicate_pairs_respect_distance_and_skip_exact_copies():
    base = "ff" * 16 + "00" * 16  # 256-bit hashes as 64 hex digits
    one_bit = base[:-1] + "1"
    phash = pd.Series([base, one_bit, base, "0" * 64])
    split = pd.Series(["train", "test", "test", "val"])
    sha = pd.Series(["h1", "h2", "h1", "h3"])
    pairs = near_duplicate_pairs(phash, split, sha, max_distance=1)
    # 0-1: distance 1, different splits -> reported; 0-2: identical content -> exact, not near;
    # 1-2: distance 1 but both test -> within a split, not leakage.
    assert pairs == [(0, 1, 1)]
    everywhere = near_duplicate_pairs(phash, split, sha, 1, across_splits_only=False)
    assert everywhere == [(0, 1, 1), (1, 2, 1)]
    assert near_duplicate_pairs(phash, split, sha, max_distance=0) == []
    assert near_duplicate_pairs(phash, split, sha, max_distance=-1) == []


def test_automatic_splits_keep_near_duplicates_together(tmp_path: Path):
    root = tmp_path / "flat"
    for cls in ("a", "b"):
        for i in range(10):
            _save(root / cls / f"{i}.png", _phantom(100 * (cls == "b") + i))
    for i in range(3):  # three lightly edited copies of a/0.png
        near = _phantom(0).astype(int)
        near[i, :3] += 4
        _save(root / "a" / f"copy{i}.png", np.clip(near, 0, 255).astype(np.uint8))
    family_pattern = r"/a/(?:0|copy\d)\.png$"

    def family_splits(distance: int) -> int:
        cfg = compose(
            [
                f"data.path={root}",
                f"runs_root={tmp_path / 'runs'}",
                f"data.near_duplicate_distance={distance}",
            ]
        )
        prepared = prepare_data(cfg.data, progress=False)
        assert "_near_group" not in prepared.table.columns
        family = prepared.table[prepared.table["path"].str.contains(family_pattern)]
        assert len(family) == 4
        return family["split"].nunique()

    assert family_splits(-1) > 1  # without near-duplicate grouping this seed splits them ...
    assert family_splits(10) == 1  # ... with it they stay together


@pytest.mark.slow
def test_chest_ct_check_reports_the_public_release_problems(tmp_path: Path):
    proc = medclf("data", "check", str(CHEST_CT), f"runs_root={tmp_path}", "--strict")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(next(tmp_path.glob("checks/*/check.json")).read_text())
    assert report["files"] == 1000 and report["readable"] == 1000
    assert len(report["classes"]) == 4
    assert report["exact_duplicates"]["groups_across_splits"] > 0
    assert report["label_conflict_count"] >= 1
    conflict = report["label_conflicts"][0]
    assert len({f["label"] for f in conflict["files"]}) == 2
    assert report["formats"]["mode"].keys() >= {"RGBA", "RGB", "L"}
    assert "adenocarcinoma" in proc.stdout and "LABEL CONFLICT" in proc.stdout
    # the near-duplicate index finds what comparing every pair finds, at every distance
    scanned = pd.read_csv(tmp_path / "cache" / "scan.csv", dtype=str, keep_default_na=False)
    split = pd.Series(np.random.default_rng(0).choice(["train", "val", "test"], len(scanned)))
    words = _hash_words(scanned["phash"])
    rows = np.arange(len(scanned))
    for distance in range(16):
        indexed = near_duplicate_pairs(scanned["phash"], split, scanned["sha256"], distance)
        compared = _every_pair(words, rows, split.to_numpy(), scanned["sha256"].to_numpy(),
                               distance, across_splits_only=True)  # fmt: skip
        assert indexed == compared, distance
    assert len(indexed) > 100  # chest_ct has many near-duplicates at 15 bits


def test_a_manifest_listing_one_file_under_two_labels_is_a_reported_conflict(tmp_path: Path):
    rows = ["path,label"]
    for i in range(12):
        _save(tmp_path / f"{i}.png", _phantom(200 + i))
        rows.append(f"{i}.png,{'ab'[i % 2]}")
    rows.append("0.png,b")  # the same file again, under the other label
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    cfg = compose([f"data.path={tmp_path}", f"runs_root={tmp_path / 'runs'}"])
    prepared = prepare_data(cfg.data, progress=False)
    report = prepared.report
    assert report["files"] == 13 and report["label_conflict_count"] == 1
    assert report["label_conflicts"][0]["labels"] == ["a", "b"]
    both = prepared.table[prepared.table["path"].str.endswith("/0.png")]
    assert len(both) == 2 and both["split"].nunique() == 1  # one content, one split


def test_an_excluded_file_takes_no_part_in_patient_accounting(tmp_path: Path):
    """One unreadable image of a patient is excluded (it has no split): it must not make the
    patient look like it is in two splits, or --strict would refuse a clean dataset."""
    root = tmp_path / "data"
    rows, seed = [], 0
    for cls in ("a", "b"):
        for p in range(5):
            for s in range(2):
                seed += 1
                name = f"{cls}{p}_{s}.png"
                _save(root / name, _phantom(seed))
                rows.append((name, cls, f"{cls}{p}"))
    (root / "a0_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rows.append(("a0_broken.png", "a", "a0"))
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(
        root / "manifest.csv", index=False
    )
    cfg = compose([f"data.path={root}", f"data.cache_dir={tmp_path / 'cache'}"])
    report = prepare_data(cfg.data, progress=False).report
    assert [Path(u["path"]).name for u in report["unreadable"]] == ["a0_broken.png"]
    assert report["patients_in_several_splits_count"] == 0
    assert report["passed"]


def _patient_coded(root: Path) -> None:
    """An unsplit folder whose names carry the patient: 3 images of each of 10 patients."""
    for p in range(10):
        label = "pneumonia" if p % 2 else "normal"
        for k in range(3):
            out = root / label / f"person{p}_{label}_{k}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_phantom(100 * p + k)).save(out)


def test_patient_coded_names_are_kept_together_warned_and_the_pattern_makes_them_exact(
    tmp_path: Path,
):
    from medclf.data.check import summary_lines

    _patient_coded(tmp_path / "data")
    common = [f"data.path={tmp_path / 'data'}", f"runs_root={tmp_path / 'runs'}"]
    common.append("data.near_duplicate_distance=-1")
    prepared = prepare_data(compose(common).data, progress=False)  # patient_pattern=auto
    warning = [ln for ln in summary_lines(prepared.report) if ln.startswith("PATIENTS?")]
    assert warning and "data.patient_pattern" in warning[0] and "person" in warning[0]
    assert "keep each in one split" in warning[0]
    assert prepared.report["patients"] == {}  # a guess is never a patient id
    guessed = prepared.table["path"].map(lambda p: Path(p).name.split("_")[0])
    assert prepared.table.groupby(guessed)["split"].nunique().max() == 1

    off = prepare_data(compose([*common, "data.patient_pattern=none"]).data, progress=False)
    warning = [ln for ln in summary_lines(off.report) if ln.startswith("PATIENTS?")]
    assert warning and "keep each in one split" not in warning[0]
    assert "occur in more than one split" in warning[0]  # 30 images, 10 patients, 3 splits

    cfg = compose([*common, "data.patient_pattern=^(person\\d+)_"])
    prepared = prepare_data(cfg.data, progress=False)
    table, report = prepared.table, prepared.report
    assert not any(ln.startswith("PATIENTS?") for ln in summary_lines(report))
    assert sum(report["patients"].values()) == 10  # each patient in exactly one split
    assert table.groupby("patient_id")["split"].nunique().max() == 1
    assert any(ln.startswith("patients per split: train") for ln in summary_lines(report))


def test_dihedral_hashes_are_the_phashes_of_the_flipped_and_rotated_image():
    import imagehash

    from medclf.data.scan import dihedral_hashes

    img = _phantom(7, size=96)[:, :80].astype(float) / 255  # not square: rotation swaps sides
    own, orbit = dihedral_hashes(img)
    assert len(own) == 64 and len(orbit) == 7 * 64
    views = [orbit[k * 64 : (k + 1) * 64] for k in range(7)]
    transforms = [np.flipud, np.fliplr, lambda a: np.flipud(np.fliplr(a)), np.transpose,
                  lambda a: np.flipud(a.T), lambda a: np.fliplr(a.T),
                  lambda a: np.flipud(np.fliplr(a.T))]  # fmt: skip
    for view, transform in zip(views, transforms, strict=True):
        assert view == dihedral_hashes(transform(img))[0]  # exactly: the resize is float
    assert len({own, *views}) == 8  # a generic image differs from each of its views
    # the same DCT pHash as imagehash's, up to imagehash's 8-bit resize rounding
    pil = Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L")
    assert imagehash.hex_to_hash(own) - imagehash.phash(pil, hash_size=16) <= 32


def test_a_rotated_copy_across_splits_is_a_near_duplicate():
    """An augmented release: a rotated and a flipped copy filed in other splits."""
    from medclf.data.scan import dihedral_hashes

    images = [_phantom(300 + i).astype(float) / 255 for i in range(6)]
    images += [np.rot90(images[0]), np.fliplr(images[1])]
    hashes = [dihedral_hashes(a) for a in images]
    phash = pd.Series([h[0] for h in hashes])
    orbit = pd.Series([h[1] for h in hashes])
    split = pd.Series(["train"] * 6 + ["test", "val"])
    sha = pd.Series([str(i) for i in range(8)])
    assert near_duplicate_pairs(phash, split, sha, 10) == []  # plain pHash misses them
    pairs = near_duplicate_pairs(phash, split, sha, 10, orbit=orbit)
    assert [(i, j) for i, j, _ in pairs] == [(0, 6), (1, 7)]
    assert all(d <= 4 for *_, d in pairs)
    # brute force (distances the index cannot prune) finds the same pairs
    brute = near_duplicate_pairs(phash, split, sha, 40, orbit=orbit)
    assert {(i, j) for i, j, _ in pairs} <= {(i, j) for i, j, _ in brute}
