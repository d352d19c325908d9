"""``train(cfg)``: from a config to a finished run directory."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medclf.atomic import write_json, write_text
from medclf.data.check import summary_lines
from medclf.data.discover import SPLITS
from medclf.data.prepare import prepare_data, provisional_preprocessing
from medclf.data.split import save_split
from medclf.errors import MedclfError
from medclf.preprocessing import normalization_stats
from medclf.rundir import RunDir

log = logging.getLogger("medclf")


@dataclass
class TrainResult:
    run: RunDir
    best_metrics: dict[str, float]
    epochs: int


def check_or_refuse(report: dict[str, Any], strict: bool) -> None:
    """Log the data check's findings; with ``data.strict`` refuse leakage or label conflicts."""
    for line in summary_lines(report):
        bad = line.startswith(("LEAKAGE", "LABEL CONFLICT"))
        (log.warning if bad else log.info)("data check: %s", line)
    if strict and not report["passed"]:
        raise MedclfError(
            "data check failed (leakage across splits or label conflicts, listed above) and "
            "data.strict=true; fix the data, or set data.strict=false to train anyway"
        )


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


def train(cfg: DictConfig) -> TrainResult:
    # Validate the data first: a bad path fails in a second, before the heavy imports.
    prepared = prepare_data(cfg.data, save_memo=False)
    from medclf.models.factory import check_model_name

    check_model_name(cfg.model)
    check_or_refuse(prepared.report, bool(cfg.data.strict))
    table = prepared.table

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from medclf.data.datamodule import CachedBatches, DecodedBatches, ImageDataModule
    from medclf.data.stats import train_images
    from medclf.models import build_model
    from medclf.training.callbacks import AtomicCheckpointIO, EpochMetricsCSV
    from medclf.training.module import Classifier

    quiet_lightning()
    provisional = provisional_preprocessing(cfg.data, table)
    classes, channels = list(provisional.class_names), provisional.channels
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(cfg.model, num_classes=len(classes), in_chans=channels)
    prepared.save_memo()
    cache = None
    if cfg.data.cache:
        cache, built = prepared.build_cache(cfg.data.cache_dir, provisional)
        log.info("image cache: %s %s", "built" if built else "reused", cache.root)
    mean, std = normalization_stats(
        str(cfg.data.normalize), channels, train_images(cache, table, provisional)
    )
    prep = dataclasses.replace(provisional, mean=mean, std=std)

    run = RunDir.create(cfg.runs_root, str(cfg.experiment), str(cfg.model.name))
    write_text(run.config, OmegaConf.to_yaml(cfg, resolve=True))
    save_split(table, run.split)
    prep.save(run.preprocessing)
    write_json(run.data_check, prepared.report)
    log.info("data check: full report in %s", run.data_check)
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
    datasets: dict[str, Any] = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        labels = [label_idx[c] for c in part["label"]]
        if cache is not None:
            rows = cache.rows(list(part["sha256"]))
            datasets[split] = CachedBatches(str(cache.images_path), rows, labels)
        else:
            datasets[split] = DecodedBatches(list(part["path"]), labels, prep)
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
        mean=prep.mean,
        std=prep.std,
        image_size=prep.image_size,
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
