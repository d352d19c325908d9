"""The settings one evaluation uses: the packaged ``eval`` defaults, then the run's own
``eval`` section (runs trained with gates of their own keep them), then command-line overrides.
``data.*`` overrides describe an external dataset (``data.path=OTHER``) and start from the
run's data settings, so a folder laid out like the training data needs nothing else."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medclf.config import compose
from medclf.config_checks import check_values
from medclf.errors import MedclfError
from medclf.run_config import load_run_config
from medclf.words import apply_overrides, keys


def evaluation_config(run_config: Path, overrides: list[str]) -> DictConfig:
    """``eval`` and ``data`` settings for one evaluation of a run."""
    for item, key in zip(overrides, keys(overrides), strict=True):
        if not key.startswith(("eval.", "data.")):
            raise MedclfError(
                f"'{item}': evaluate takes eval.* and data.* settings (data.path=OTHER evaluates "
                "another dataset); the model's own settings come from the run"
            )
    # validates every key and value; its eval section is the packaged one with the overrides,
    # which are applied again below, on top of the run's own eval section
    packaged = compose(overrides)
    saved = load_run_config(run_config)
    cfg = OmegaConf.create(
        {
            "eval": OmegaConf.merge(packaged.eval, saved.get("eval") or {}),
            "data": saved.data,
        }
    )
    apply_overrides(cfg, overrides)
    check_values(cfg, sections=["eval", "data"])  # the merged values, before any image is read
    return cfg
