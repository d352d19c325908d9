"""Patients guessed from file names: which names count, and which never do."""

from __future__ import annotations

import pandas as pd

from medclf.data.name_ids import guessed_ids, patient_coded_names


def _paths(names: list[str]) -> pd.Series:
    return pd.Series([f"/data/train/c/{n}" for n in names])


def _kermany_like() -> list[str]:
    """The public pediatric chest X-ray naming: children with 1-3 pneumonia images each,
    normal images of single patients, and a word (NORMAL2) on a third of the normals."""
    names = [f"person{p}_bacteria_{10 * p + k}.jpeg" for p in range(60) for k in range(1 + p % 3)]
    names += [f"IM-{p:04d}-0001.jpeg" for p in range(40)]
    names += [f"IM-{p:04d}-0002.jpeg" for p in range(0, 40, 4)]
    names += [f"NORMAL2-IM-{p:04d}-0001.jpeg" for p in range(50)]
    return names


def test_ids_are_word_number_prefixes_and_a_class_wide_word_is_not_one():
    paths = _paths(_kermany_like())
    ids = guessed_ids(paths)
    by_name = dict(zip(paths.map(lambda p: p.rsplit("/", 1)[1]), ids, strict=True))
    assert by_name["person5_bacteria_50.jpeg"] == by_name["person5_bacteria_51.jpeg"] == "person5"
    assert by_name["IM-0004-0001.jpeg"] == by_name["IM-0004-0002.jpeg"] == "IM-0004"
    assert by_name["person0_bacteria_0.jpeg"] == ""  # one image: nothing to keep together
    assert by_name["IM-0001-0001.jpeg"] == ""
    # NORMAL2 is on 50 files while shared ids hold 2-3: an outlier, i.e. a word, not a patient
    assert by_name["NORMAL2-IM-0007-0001.jpeg"] == ""
    coded = patient_coded_names(paths)
    # 40 children with 2-3 images (100 files), 10 normal patients with 2 (20 files)
    assert coded is not None and (coded["prefixes"], coded["files"]) == (50, 120)


def test_nih_style_numeric_patient_ids_are_found():
    names = [f"{p:08d}_{k:03d}.png" for p in range(1, 30) for k in range(p % 4 + 1)]
    ids = guessed_ids(_paths(names))
    assert ids.iloc[0] == ids.iloc[1] == "00000001" != ids.iloc[2]


def test_unique_names_fixed_words_and_rare_sharing_are_not_patient_coded():
    unique = _paths([f"{i:05d}.png" for i in range(20)])
    assert patient_coded_names(unique) is None
    fixed = _paths([f"IM-{i:04d}.png" for i in range(20)])  # the number ends the name
    assert patient_coded_names(fixed) is None
    words = _paths([f"Tr-gl_{i:04d}.jpg" for i in range(20)])  # brain MRI: split-class words
    assert patient_coded_names(words) is None
    one_pair = _paths(["scan1_a.png", "scan1_b.png"] + [f"scan{i}_a.png" for i in range(2, 40)])
    assert patient_coded_names(one_pair) is None  # a single shared prefix is a coincidence
    assert (guessed_ids(one_pair) == "").all()
