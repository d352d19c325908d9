"""``medclf train cv=K``: k-fold cross-validation and its fold ensemble.

The data is prepared and checked once; the recipe (``recipe=auto``) is chosen once, so every
fold trains the same configuration. The train and val images are split into ``K``
patient-grouped, stratified folds (``data.folds``; the test split untouched) and each fold
is a normal run, ``RUN/fold-k/``, trained with its split file. ``RUN`` itself is then the
fold ensemble: a run folder whose ``weights/best.ckpt`` holds every fold network
(``models.ensemble.FoldEnsemble``, the mean of their probabilities), whose ``split.csv`` marks
each train/val image as validation with the fold that validated it (``cv_fold``), and whose
``cv.json`` holds the folds' validation metrics with their mean and spread. ``evaluate``
fits the temperature, thresholds and conformal quantile on the out-of-fold predictions;
export, predict, serve and register take the folder like any run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from medclf.atomic import atomic_path, write_json, write_text
from medclf.data.folds import assign_folds, ensemble_table, fold_table
from medclf.data.prepare import PreparedData
from medclf.data.split import save_split
from medclf.errors import MedclfError
from medclf.models.checkpoint import SUMMARY_DIGEST_KEY
from medclf.rundir import RunDir
from medclf.training.run import TrainResult, check_and_plan

log = logging.getLogger("medclf")
CV_FILE = "cv.json"  # in the ensemble's run folder: folds, their metrics, mean and spread
SPLITS_DIR = "cv_splits"  # the split file each fold trained with


@dataclass
class CvResult:
    run: RunDir  # the fold ensemble
    folds: list[TrainResult]
    summary: dict[str, Any]  # cv.json


def train_cv(cfg: DictConfig, keep: tuple[str, ...] = ()) -> CvResult:
    """Plan once -> K fold runs -> the ensemble run folder around them."""
    from medclf.tracking import close_parent, open_parent
    from medclf.training import ddp

    folds = int(cfg.cv)
    if ddp.launched_together():
        raise MedclfError(
            f"cv={folds} trains one run per fold: launch it with train.devices=N (Lightning "
            "starts the other ranks for each fold), not under torchrun or srun"
        )
    # everything that can refuse (data, recipe, model, stages, device), once for all folds;
    # the recipe is resolved into cfg and the folds train it with recipe=none
    prepared = check_and_plan(cfg, None, keep)[0]
    prepared.save_memo()
    assigned = assign_folds(prepared.table, folds, int(cfg.seed), prepared.groups())
    model_name = f"cv{folds}-{str(cfg.model.name).replace('/', '_')}"
    ensemble = RunDir.create(cfg.runs_root, str(cfg.run_group), model_name, cfg.run_name)
    parent = open_parent(cfg, ensemble.name, {"medclf.cv": str(ensemble.root.resolve())})
    results: list[TrainResult] = []
    try:
        for k in range(1, folds + 1):
            log.info("cv fold %d/%d", k, folds)
            split_file = ensemble.root / SPLITS_DIR / f"fold-{k}.csv"
            split_file.parent.mkdir(exist_ok=True)
            save_split(fold_table(prepared.table, assigned, k), split_file)
            results.append(_train_fold(cfg, ensemble, k, split_file, parent))
        summary = _assemble(cfg, ensemble, prepared, assigned, results)
    except BaseException:
        close_parent(cfg, parent, failed=True)
        if not results:  # nothing trained: leave no folder that looks like a run
            shutil.rmtree(ensemble.root, ignore_errors=True)
        raise
    close_parent(cfg, parent, metrics=summary["mean"])
    return CvResult(ensemble, results, summary)


def _train_fold(
    cfg: DictConfig, ensemble: RunDir, k: int, split_file: Path, parent: str | None
) -> TrainResult:
    """Fold ``k`` as a normal run ``ENSEMBLE/fold-k`` (an MLflow child of the cv's run)."""
    from medclf.training.run import train

    fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(fold_cfg):
        fold_cfg.cv = 0
        fold_cfg.recipe = "none"  # chosen once, already in cfg
        fold_cfg.data.split_file = str(split_file)
        fold_cfg.run_group = f"{cfg.run_group}/{ensemble.name}"
        fold_cfg.run_name = f"fold-{k}"
        fold_cfg.mlflow.experiment = str(cfg.mlflow.experiment or cfg.run_group)
        fold_cfg.mlflow.parent_run = parent or cfg.mlflow.parent_run
    OmegaConf.set_struct(fold_cfg, True)
    with _checked_once():
        return train(fold_cfg)


class _RepeatedCheck(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("data check:")


@contextlib.contextmanager
def _checked_once() -> Iterator[None]:
    """The data check was logged once for all folds (``train_cv``); a fold's training repeats
    it on its own split (and still refuses what fails it), without the lines."""
    quiet = _RepeatedCheck()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _assemble(
    cfg: DictConfig,
    ensemble: RunDir,
    prepared: PreparedData,
    assigned: Any,
    results: list[TrainResult],
) -> dict[str, Any]:
    """The ensemble's run folder: config, split (out-of-fold validation), preprocessing,
    data check, the merged checkpoint, cv.json and train_summary.json (its digest)."""
    from medclf.preprocessing import Preprocessing
    from medclf.safeload import file_sha256

    preps = [Preprocessing.load_file(r.run.preprocessing) for r in results]
    first = preps[0]
    for r, p in zip(results[1:], preps[1:], strict=True):
        if dataclasses.replace(p, mean=first.mean, std=first.std) != first:
            raise MedclfError(
                f"{r.run.root}: its preprocessing differs from fold 1's beyond normalization; "
                "the folds cannot form one ensemble"
            )
    write_text(ensemble.config, OmegaConf.to_yaml(cfg, resolve=True))
    save_split(ensemble_table(prepared.table, assigned), ensemble.split)
    first.save(ensemble.preprocessing)
    write_json(ensemble.data_check, prepared.report)
    _save_ensemble_checkpoint(ensemble, results, preps)
    summary = _cv_summary(cfg, results)
    write_json(ensemble.root / CV_FILE, summary)
    write_json(
        ensemble.summary,
        {
            "epochs": [r.epochs for r in results],
            "monitor": str(cfg.train.monitor),
            "best": summary["mean"],
            "cv": {"folds": len(results), "file": CV_FILE},
            SUMMARY_DIGEST_KEY: file_sha256(ensemble.best_ckpt),
        },
    )
    return summary


def _save_ensemble_checkpoint(ensemble: RunDir, results: list[TrainResult], preps: list) -> None:
    """Every fold's deployed weights (EMA ones where trained with them) in one checkpoint
    that ``models.checkpoint`` loads as a ``FoldEnsemble``."""
    import torch

    from medclf.models.checkpoint import model_from_checkpoint
    from medclf.models.ensemble import FoldEnsemble

    loaded = [model_from_checkpoint(r.run.best_ckpt) for r in results]
    model = FoldEnsemble([network for network, _ in loaded], channels=preps[0].channels)
    model.set_normalization((preps[0].mean, preps[0].std), [(p.mean, p.std) for p in preps])
    meta = dict(loaded[0][1])
    meta["ema"] = False
    meta["ensemble"] = {"folds": len(results), "runs": [r.run.name for r in results]}
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    ensemble.best_ckpt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(ensemble.best_ckpt) as tmp:
        torch.save({"state_dict": state, "medclf": meta}, tmp)


def _cv_summary(cfg: DictConfig, results: list[TrainResult]) -> dict[str, Any]:
    """Each fold's best-epoch validation metrics, their mean and sample standard deviation."""
    names = sorted({k for r in results for k in r.best_metrics if k.startswith("val/")})
    values = {n: [r.best_metrics.get(n) for r in results] for n in names}
    complete = {n: np.array(v, dtype=float) for n, v in values.items() if None not in v}
    return {
        "folds": len(results),
        "seed": int(cfg.seed),
        "runs": [r.run.name for r in results],
        "per_fold": [{"run": r.run.name, "epochs": r.epochs, **r.best_metrics} for r in results],
        "mean": {n: float(v.mean()) for n, v in complete.items()},
        "std": {n: float(v.std(ddof=1)) for n, v in complete.items()},
    }


def summary_lines(summary: dict[str, Any], limit: int = 6) -> list[str]:
    """``val/acc 0.912 +/- 0.021`` per validation metric, for the console."""
    from medclf.formatting import number

    return [
        f"{name} {number(summary['mean'][name])} +/- {number(summary['std'][name])}"
        for name in list(summary["mean"])[:limit]
    ]
