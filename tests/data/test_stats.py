"""Training-split normalization statistics: computed on train only, saved and verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclf.config import compose
from medclf.data.stats import compute_stats, normalization_stats
from medclf.data.transform import load
from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing
from tests.conftest import medclf


def test_stats_use_only_the_training_split(tiny_synth: Path, tmp_path: Path):
    cfg = compose([f"data.path={tiny_synth}", "data.image_size=32", f"runs_root={tmp_path}"])
    stats = compute_stats(cfg.data, progress=False)
    split = pd.read_csv(tiny_synth / "manifest.csv")  # no split column: medclf makes one
    assert stats["train_images"] < len(split)
    # Recompute by hand from the live preprocessing on exactly the training images.
    from medclf.data.prepare import prepare_data

    table = prepare_data(cfg.data, progress=False).table
    prep = Preprocessing(32, 1, ("x",), (0.0,), (1.0,))
    train = np.stack([load(prep, p) for p in table.loc[table["split"] == "train", "path"]])
    rest = np.stack([load(prep, p) for p in table.loc[table["split"] != "train", "path"]])
    assert abs(stats["mean"][0] - train.mean()) < 1e-4
    assert abs(stats["std"][0] - train.std()) < 1e-4
    assert abs(stats["mean"][0] - rest.mean()) > 1e-4  # and so differ from the held-out data


def test_save_then_verify_and_detect_a_change(tiny_synth: Path, tmp_path: Path):
    saved = tmp_path / "stats.json"
    args = ["data", "stats", str(tiny_synth), "data.image_size=32", f"runs_root={tmp_path}"]
    first = medclf(*args, "--save", str(saved), "--quiet")
    assert first.returncode == 0, first.stderr
    assert medclf(*args, "--verify", str(saved), "--quiet").returncode == 0
    doctored = json.loads(saved.read_text())
    doctored["mean"][0] += 0.01
    saved.write_text(json.dumps(doctored))
    bad = medclf(*args, "--verify", str(saved), "--quiet")
    assert bad.returncode == 1 and "mismatch: mean" in bad.stderr
    other_size = medclf(
        *args[:-2], "data.image_size=48", f"runs_root={tmp_path}", "--verify", str(saved)
    )
    assert other_size.returncode == 1 and "image_size" in other_size.stderr


def test_dataset_statistics_use_only_given_images():
    imgs = [np.full((1, 4, 4), 0.2, np.float32), np.full((1, 4, 4), 0.6, np.float32)]
    mean, std = normalization_stats("dataset", 1, imgs)
    assert mean[0] == pytest.approx(0.4) and std[0] == pytest.approx(0.2)
    assert normalization_stats("none", 3, []) == ((0.0,) * 3, (1.0,) * 3)
    assert normalization_stats("imagenet", 3, [])[0] == (0.485, 0.456, 0.406)
    with pytest.raises(MedclfError, match=r"data\.normalize"):
        normalization_stats("zscore", 1, imgs)
