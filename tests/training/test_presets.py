"""The shipped experiment presets: each composes to its recipe and trains one tiny epoch.

The real preset is composed once and then shrunk (tiny images, one batch, one epoch per
stage, no trackers), as lightning-hydra-template's tests do: what is tested is that the
preset's architecture, optimizer, stages and head build and train together."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from medclf.config import compose_for_training, group_options

PRESETS = group_options("experiment")


def test_the_shipped_presets_are_the_issue_s_recipes():
    assert set(PRESETS) == {"chest_ct", "chest_ct_cnn", "brain_mri", "brain_mri_swin", "lung_xray"}
    brain = compose_for_training(["experiment=brain_mri"])
    assert (brain.model.name, brain.data.image_size, brain.train.optimizer) == (
        "xception",
        299,
        "adamax",
    )
    xray = compose_for_training(["experiment=lung_xray"])
    assert [s.name for s in xray.train.stages] == ["head", "finetune"]
    assert xray.train.loss.label_smoothing == 0.1
    # the command line still wins over the preset, a group choice included
    other = compose_for_training(["experiment=lung_xray", "model=efficientnet_v2_s"])
    assert other.model.name == "efficientnet_v2_s" and other.train.stages is not None


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_a_complete_recipe_in_its_own_run_group(name: str):
    cfg = compose_for_training([f"experiment={name}", "data.path=/somewhere"])
    assert cfg.recipe == "none"  # a preset is not rewritten by recipe=auto
    assert cfg.run_group == name
    assert compose_for_training([f"experiment={name}", "recipe=auto"]).recipe == "auto"


def _shrunk(name: str, data: Path, runs: Path) -> object:
    cfg = compose_for_training(
        [
            f"experiment={name}",
            f"data.path={data}",
            f"runs_root={runs}",
            "data.image_size=64",
            "data.batch_size=4",
            "model.pretrained=false",
            "train.max_epochs=1",
            "train.limit_train_batches=1",
            "train.progress_bar=false",
            "logger=[]",
        ]
    )
    if cfg.train.stages:
        with open_dict(cfg):
            for stage in cfg.train.stages:
                stage.epochs = 1
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_trains_one_tiny_epoch(name: str, tiny_synth: Path, tmp_path: Path):
    from medclf.training.run import train

    cfg = _shrunk(name, tiny_synth, tmp_path / "runs")
    result = train(cfg)
    assert result.run.root.parent == tmp_path / "runs" / name
    assert result.run.best_ckpt.is_file()
    saved = OmegaConf.load(result.run.config)
    assert saved.model.name == OmegaConf.select(cfg, "model.name")
    epochs = pd.read_csv(result.run.metrics_csv)
    stages = [s.name for s in cfg.train.stages] if cfg.train.stages else ["train"]
    assert list(epochs["stage"]) == stages  # one epoch per stage, in order
    assert epochs["val/loss"].notna().all()
