"""The pieces of one training run, each built in one place: batches, the LightningModule,
callbacks, the Trainer, and the summary written when it ends (``training.run`` calls them in
that order)."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medclf.atomic import write_json
from medclf.data.discover import SPLITS
from medclf.errors import MedclfError
from medclf.models.checkpoint import SUMMARY_DIGEST_KEY
from medclf.preprocessing import Preprocessing
from medclf.rundir import RunDir
from medclf.safeload import file_sha256

log = logging.getLogger("medclf")


def build_datamodule(
    cfg: DictConfig, table: Any, prep: Preprocessing, cache: Any, train_counts: list[int]
) -> Any:
    """Batches of every split: from the decode-once cache, or decoded per epoch without it;
    ``train.sampler=weighted`` draws each class equally often."""
    from medclf.data.datamodule import CachedBatches, DecodedBatches, ImageDataModule

    label_idx = {c: i for i, c in enumerate(prep.class_names)}
    datasets: dict[str, Any] = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        labels = [label_idx[c] for c in part["label"]]
        if cache is not None:
            rows = cache.rows(list(part["sha256"]))
            datasets[split] = CachedBatches(str(cache.images_path), rows, labels)
        else:
            datasets[split] = DecodedBatches(list(part["path"]), labels, prep)
    train_weights = None
    if cfg.train.sampler == "weighted":
        per_class = [1.0 / max(n, 1) for n in train_counts]
        train_weights = [per_class[i] for i in datasets["train"].labels]
    return ImageDataModule(
        datasets,
        int(cfg.data.batch_size),
        int(cfg.data.num_workers),
        train_weights=train_weights,
        seed=int(cfg.seed),
    )


def build_module(
    cfg: DictConfig,
    model: Any,
    prep: Preprocessing,
    stages: list[Any],
    loss: Any,
    monitor: tuple[str, str],
    device_flags: tuple[str, bool, bool],
) -> Any:
    """The LightningModule around ``model``: loss, augmentation, normalization, EMA, mixup,
    stages, and what every checkpoint records about the model and its preprocessing."""
    import torch

    from medclf.training.module import Classifier

    _, channels_last, compile_ = device_flags
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model.compile()  # in place: parameter names (and checkpoints) stay those of the model
    meta: dict[str, Any] = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "num_classes": len(prep.class_names),
        "in_chans": prep.channels,
        "preprocessing": prep.to_dict(),
    }
    mixup = OmegaConf.to_container(cfg.train.mixup, resolve=True)
    mixup["label_smoothing"] = float(cfg.train.loss.label_smoothing)
    return Classifier(
        model,
        num_classes=len(prep.class_names),
        stages=stages,
        loss=loss,
        augment=OmegaConf.to_container(cfg.data.augment, resolve=True),
        mean=prep.mean,
        std=prep.std,
        image_size=prep.image_size,
        monitor=monitor[0],
        monitor_mode=monitor[1],
        mixup=mixup,
        ema_decay=float(cfg.train.ema.decay) if cfg.train.ema.enabled else None,
        channels_last=channels_last,
        checkpoint_meta=meta,
    )


def build_callbacks(
    cfg: DictConfig, run: RunDir, stages: list[Any], monitor: tuple[str, str]
) -> tuple[list[Any], Any]:
    """(callbacks, the metrics.csv writer): checkpoints, per-epoch rows, RNG state, early
    stopping within stages, the progress bar."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from medclf.training.callbacks import EpochMetricsCSV, ProgressBar, RNGState, StageEarlyStopping

    name, mode = monitor
    # Both saved after validation and after metrics.csv got the epoch's row, so a checkpoint
    # never covers an epoch metrics.csv lacks and a resume after a kill loses no rows.
    best_ckpt = ModelCheckpoint(
        dirpath=run.best_ckpt.parent,
        filename=run.best_ckpt.stem,
        monitor=name,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )
    # last.ckpt from its own callback: Lightning 2.6's save_last writes only in epochs that
    # also improved the monitor, which would make a resume repeat epochs.
    last_ckpt = ModelCheckpoint(
        dirpath=run.last_ckpt.parent,
        filename=run.last_ckpt.stem,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )
    epoch_log = EpochMetricsCSV(run.metrics_csv)
    callbacks: list[Any] = [RNGState(), epoch_log, best_ckpt, last_ckpt]
    if any(s.early_stopping for s in stages):
        callbacks.append(
            StageEarlyStopping(
                monitor=name,
                mode=mode,
                patience=int(cfg.train.early_stopping.patience),
                min_delta=float(cfg.train.early_stopping.min_delta),
            )
        )
    if cfg.train.progress_bar:
        callbacks.append(ProgressBar())
    return callbacks, epoch_log


def build_trainer(
    cfg: DictConfig,
    run: RunDir,
    stages: list[Any],
    callbacks: list[Any],
    loggers: list[Any],
    precision: str,
) -> Any:
    """Lightning's Trainer with every train.* loop setting, atomic checkpoint writes and the
    wall-clock guard of the time budget."""
    import lightning as L

    from medclf.training.callbacks import AtomicCheckpointIO

    return L.Trainer(
        default_root_dir=run.root,
        max_epochs=sum(s.epochs for s in stages),
        accelerator=str(cfg.train.accelerator),
        devices=cfg.train.devices,
        num_nodes=int(cfg.train.num_nodes),
        strategy=_strategy(cfg),
        # under DDP each rank's share of the batches comes from ImageDataModule (RankBatches)
        use_distributed_sampler=False,
        precision=precision,
        deterministic=bool(cfg.train.deterministic),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bool(cfg.train.progress_bar),
        enable_model_summary=False,
        limit_train_batches=cfg.train.limit_train_batches,
        gradient_clip_val=cfg.train.grad_clip,
        accumulate_grad_batches=int(cfg.train.accumulate_grad_batches),
        profiler=_profiler(cfg.train.profiler, run),
        min_epochs=cfg.train.min_epochs,
        max_time=max_time(cfg.train.time_budget),
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


def _strategy(cfg: DictConfig) -> Any:
    """Lightning's DDP (gloo on CPUs, NCCL on GPUs) whenever there is more than one training
    process, with a bounded collective timeout so a dead rank fails the others."""
    import datetime

    from medclf.training import ddp

    if str(cfg.train.strategy) == "auto" and not ddp.distributed(cfg):
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(timeout=datetime.timedelta(seconds=ddp.COLLECTIVE_TIMEOUT_S))


def _profiler(name: str | None, run: RunDir) -> Any:
    if name is None:
        return None
    from lightning.pytorch import profilers

    kind = {
        "simple": "SimpleProfiler",
        "advanced": "AdvancedProfiler",
        "pytorch": "PyTorchProfiler",
    }
    return getattr(profilers, kind[name])(dirpath=str(run.profile_dir), filename="profile")


def max_time(budget: Any) -> Any:
    """Lightning's wall-clock stop at 1.15 x ``train.time_budget``: a guard for the recipe's
    estimate (a slower machine than the probe saw), not the plan itself."""
    import datetime

    from medclf.training.recipe import parse_duration

    seconds = parse_duration(budget)
    return None if seconds is None else datetime.timedelta(seconds=1.15 * seconds)


def summarize(
    run: RunDir,
    epochs: int,
    stages: list[Any],
    monitor: tuple[str, str],
    rows: list[dict[str, Any]],
    loggers: list[Any],
) -> dict[str, float]:
    """After fit: the curves figure and train_summary.json (with best.ckpt's sha256, which
    every later load checks); returns the best epoch's metrics."""
    from medclf.curves import plot_training_curves

    if not run.best_ckpt.is_file():
        raise MedclfError(f"training finished without a checkpoint in {run.best_ckpt.parent}")
    plot_training_curves(run.metrics_csv, run.curves_png)
    best = best_epoch_row(rows, *monitor)
    write_json(
        run.summary,
        {
            "epochs": epochs,
            "stages": [s.name for s in stages],
            "monitor": monitor[0],
            "best": best,
            "loggers": {lg.label: not lg.failed for lg in loggers},
            SUMMARY_DIGEST_KEY: file_sha256(run.best_ckpt),
        },
    )
    return best


def best_epoch_row(rows: list[dict[str, Any]], monitor: str, mode: str) -> dict[str, float]:
    scored = [r for r in rows if r.get(monitor) is not None]
    if not scored:
        return {}
    pick = min if mode == "min" else max
    best = pick(scored, key=lambda r: r[monitor])
    return {
        k: float(v) for k, v in best.items() if k == "epoch" or k.startswith(("val/", "train/"))
    }
