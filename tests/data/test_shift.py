import numpy as np
import pandas as pd
import pytest

from medclf.data.shift import shift_lines, split_shift
from tests.conftest import CHEST_CT


def _table(rng, n, split, width, intensity, label="a"):
    return pd.DataFrame(
        {
            "split": split,
            "label": label,
            "width": rng.normal(width, 10, n).round(),
            "height": rng.normal(300, 10, n).round(),
            "intensity_mean": rng.normal(intensity, 0.02, n),
            "intensity_std": rng.normal(0.2, 0.01, n),
            "kind": "png",
            "mode": "L",
            "bits": 8,
        }
    )


def test_a_shifted_test_split_is_named_and_a_like_one_is_not():
    rng = np.random.default_rng(0)
    same = pd.concat([_table(rng, 80, "train", 400, 0.3), _table(rng, 40, "test", 400, 0.3)])
    assert split_shift(same)["findings"] == []
    shifted = pd.concat([_table(rng, 80, "train", 400, 0.3), _table(rng, 40, "test", 460, 0.22)])
    found = {f["feature"] for f in split_shift(shifted)["findings"]}
    assert {"width", "mean intensity"} <= found and "height" not in found
    (line,) = [ln for ln in shift_lines(split_shift(shifted)) if ln.startswith("SPLIT SHIFT")]
    assert line.startswith("SPLIT SHIFT test differs from train") and "KS D=" in line


def test_size_that_separates_classes_is_flagged():
    rng = np.random.default_rng(1)
    df = pd.concat(
        [_table(rng, 50, "train", 400, 0.3, "tumour"), _table(rng, 50, "train", 600, 0.3, "normal")]
    )
    size = split_shift(df)["size_reveals_class"]
    assert size["flagged"] and size["eta_squared"] > 0.5
    assert any(ln.startswith("SIZE REVEALS CLASS") for ln in shift_lines(split_shift(df)))
    df["width"] = rng.normal(500, 10, len(df)).round()
    assert not split_shift(df)["size_reveals_class"]["flagged"]


@pytest.mark.skipif(not CHEST_CT.is_dir(), reason="shared chest_ct dataset not present")
def test_chest_ct_test_split_and_normal_sizes_are_reported(tmp_path):
    from medclf.config import compose
    from medclf.data.prepare import prepare_data

    cfg = compose([f"data.path={CHEST_CT}", f"runs_root={tmp_path}"])
    shift = prepare_data(cfg.data, progress=False).report["split_shift"]
    features = {f["feature"] for f in shift["findings"] if f["split"] == "test"}
    assert {"height", "mean intensity"} <= features
    assert shift["size_reveals_class"]["flagged"]
    assert shift["size_reveals_class"]["median_size"]["normal"] == "581x475"


def _patients(rng, n_patients: int, per_patient: int) -> pd.DataFrame:
    """Images clustered in patients: each patient's intensity is its own (ICC about 0.9),
    patients assigned to splits at random, so the splits are exchangeable."""
    level = rng.normal(0.3, 0.05, n_patients)
    rows = []
    for p in range(n_patients):
        split = rng.choice(["train", "train", "train", "val", "test"])
        for _ in range(per_patient):
            rows.append(
                {
                    "split": split,
                    "label": "ab"[p % 2],
                    "patient_id": f"P{p}",
                    "width": 256,
                    "height": 256,
                    "intensity_mean": level[p] + rng.normal(0, 0.015),
                    "intensity_std": 0.2 + level[p] / 3 + rng.normal(0, 0.005),
                }
            )
    return pd.DataFrame(rows)


def test_exchangeable_patient_splits_are_not_flagged_for_their_clustering():
    """Eight images a patient, random patient splits: counted as independent images the check
    flags most splits; at their effective size, with Holm over its tests, almost none."""
    flagged, naive = 0, 0
    for seed in range(12):
        df = _patients(np.random.default_rng(seed), 50, 8)
        result = split_shift(df)
        flagged += bool(result["findings"])
        assert result["intraclass_correlation"]["mean intensity"] > 0.7
        naive += bool(split_shift(df.assign(patient_id=""))["findings"])
    assert flagged <= 1 and naive >= 8, (flagged, naive)


def test_holm_adjusts_in_order_and_never_decreases():
    from medclf.data.shift import holm

    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.3]) == [0.6, 0.6] and holm([]) == []
