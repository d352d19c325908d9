"""The settings one evaluation uses: the packaged ``eval`` defaults, then the run's own
``eval`` section (runs trained with gates of their own keep them), then command-line overrides.
``data.*`` overrides describe an external dataset (``data.path=OTHER``) and start from the
run's data settings, so a folder laid out like the training data needs nothing else."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from medclf.config import compose
from medclf.config_checks import check_values
from medclf.errors import MedclfError


def evaluation_config(run_config: Path, overrides: list[str]) -> DictConfig:
    """``eval`` and ``data`` settings for one evaluation of a run."""
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+")
        if not key.startswith(("eval.", "data.")):
            raise MedclfError(
                f"'{item}': evaluate takes eval.* and data.* settings (data.path=OTHER evaluates "
                "another dataset); the model's own settings come from the run"
            )
    # validates every key and value; its eval section is the packaged one with the overrides,
    # which are applied again below, on top of the run's own eval section
    packaged = compose(overrides)
    saved = OmegaConf.load(run_config)
    cfg = OmegaConf.create(
        {
            "eval": OmegaConf.merge(packaged.eval, saved.get("eval") or {}),
            "data": saved.data,
        }
    )
    with open_dict(cfg):
        for item in overrides:
            key, _, value = item.partition("=")
            # YAML, as Hydra reads values: gates_on=ci a string, classes=[a,b] a list
            OmegaConf.update(cfg, key.lstrip("+"), yaml.safe_load(value) if value else None)
    check_values(cfg, sections=["eval", "data"])  # the merged values, before any image is read
    return cfg
