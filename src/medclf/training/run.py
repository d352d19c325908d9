"""``train(cfg)``: from a config to a finished run directory."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from medclf.atomic import write_text
from medclf.data.discover import SPLITS, discover
from medclf.data.split import load_split, make_splits, save_split
from medclf.errors import MedclfError
from medclf.preprocessing import Preprocessing, normalization_stats
from medclf.rundir import RunDir

log = logging.getLogger("medclf")


@dataclass
class TrainResult:
    run: RunDir
    best_metrics: dict[str, float]
    epochs: int


def _split_table(cfg: DictConfig) -> pd.DataFrame:
    if cfg.data.split_file:
        return load_split(cfg.data.split_file)
    return make_splits(
        discover(cfg.data.path), list(cfg.data.split_ratios), int(cfg.data.split_seed)
    )


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


def train(cfg: DictConfig) -> TrainResult:
    # Validate the data first: a bad path fails in a second, before the heavy imports.
    table = _split_table(cfg)

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from medclf.data.datamodule import ArrayDataset, ImageDataModule, decode_all
    from medclf.models import build_model
    from medclf.training.callbacks import AtomicCheckpointIO, EpochMetricsCSV
    from medclf.training.module import Classifier

    _quiet_lightning()
    classes = sorted(table["label"].unique())
    channels = int(cfg.data.channels)
    # Decode once with a provisional record (identity normalization), then compute the
    # training-split statistics on exactly those arrays, as the model will see them.
    # The record validates image_size and channels before anything heavy happens.
    provisional = Preprocessing(
        image_size=int(cfg.data.image_size),
        channels=channels,
        class_names=tuple(classes),
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        normalize=str(cfg.data.normalize),
    )
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(cfg.model, num_classes=len(classes), in_chans=channels)
    arrays, errors = decode_all(list(table["path"]), provisional, desc="decoding images")
    if errors:
        more = f" (and {len(errors) - 1} more unreadable files)" if len(errors) > 1 else ""
        raise MedclfError(f"{errors[0]}{more}")
    table = table.assign(_i=range(len(table)))
    train_idx = table.loc[table["split"] == "train", "_i"].tolist()
    mean, std = normalization_stats(
        str(cfg.data.normalize), channels, [arrays[i] for i in train_idx]
    )
    prep = dataclasses.replace(provisional, mean=mean, std=std)

    run = RunDir.create(cfg.runs_root, str(cfg.experiment), str(cfg.model.name))
    write_text(run.config, OmegaConf.to_yaml(cfg, resolve=True))
    save_split(table.drop(columns="_i"), run.split)
    prep.save(run.preprocessing)
    counts = table.groupby("split").size().to_dict()
    log.info(
        "data: %s classes (%s); train %d, val %d, test %d images",
        len(classes),
        ", ".join(classes),
        counts.get("train", 0),
        counts.get("val", 0),
        counts.get("test", 0),
    )

    label_idx = {c: i for i, c in enumerate(classes)}
    datasets = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        datasets[split] = ArrayDataset(
            [arrays[i] for i in part["_i"]], [label_idx[c] for c in part["label"]], prep
        )
    dm = ImageDataModule(datasets, int(cfg.data.batch_size), int(cfg.data.num_workers))

    meta: dict[str, Any] = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "num_classes": len(classes),
        "in_chans": channels,
        "preprocessing": prep.to_dict(),
    }
    module = Classifier(
        model,
        num_classes=len(classes),
        optimizer=str(cfg.train.optimizer),
        lr=float(cfg.train.lr),
        weight_decay=float(cfg.train.weight_decay),
        scheduler=str(cfg.train.scheduler),
        max_epochs=int(cfg.train.max_epochs),
        augment=OmegaConf.to_container(cfg.data.augment, resolve=True),
        checkpoint_meta=meta,
    )
    monitor, mode = str(cfg.train.monitor), str(cfg.train.monitor_mode)
    ckpt = ModelCheckpoint(
        dirpath=run.best_ckpt.parent,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    epoch_log = EpochMetricsCSV(run.metrics_csv)
    callbacks: list[L.Callback] = [ckpt, epoch_log]
    if cfg.train.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=int(cfg.train.early_stopping.patience),
                min_delta=float(cfg.train.early_stopping.min_delta),
            )
        )
    trainer = L.Trainer(
        default_root_dir=run.root,
        max_epochs=int(cfg.train.max_epochs),
        accelerator=str(cfg.train.accelerator),
        devices=cfg.train.devices,
        precision=str(cfg.train.precision),
        deterministic=bool(cfg.train.deterministic),
        logger=TensorBoardLogger(save_dir=str(run.logs), name="tensorboard", version=""),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bool(cfg.train.progress_bar),
        enable_model_summary=False,
        limit_train_batches=cfg.train.limit_train_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, datamodule=dm)
    if not run.best_ckpt.is_file():
        raise MedclfError(f"training finished without a checkpoint in {run.best_ckpt.parent}")
    return TrainResult(
        run=run,
        best_metrics=_best_epoch_row(epoch_log.rows, monitor, mode),
        epochs=trainer.current_epoch,
    )


def _best_epoch_row(rows: list[dict[str, Any]], monitor: str, mode: str) -> dict[str, float]:
    scored = [r for r in rows if r.get(monitor) is not None]
    if not scored:
        return {}
    pick = min if mode == "min" else max
    best = pick(scored, key=lambda r: r[monitor])
    return {
        k: float(v) for k, v in best.items() if k == "epoch" or k.startswith(("val/", "train/"))
    }
