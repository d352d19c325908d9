"""``train(cfg)`` and ``resume(run)``: from a config to a finished run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from medclf.atomic import write_json, write_text
from medclf.data.check import summary_lines
from medclf.data.discover import SPLITS
from medclf.data.prepare import PreparedData, prepare_data, provisional_preprocessing
from medclf.data.split import save_split
from medclf.errors import MedclfError
from medclf.models.checkpoint import SUMMARY_DIGEST_KEY, load_checkpoint
from medclf.preprocessing import Preprocessing, normalization_stats
from medclf.rundir import RunDir
from medclf.safeload import file_sha256
from medclf.training.monitor import resolve_monitor
from medclf.words import apply_overrides, keys

log = logging.getLogger("medclf")
# Overrides `medclf train resume=RUN` accepts: they change how training is watched, never
# what is trained, so the resumed run still ends exactly as an uninterrupted one.
RESUME_OVERRIDES = ("train.progress_bar", "logger", "train.profiler")


@dataclass
class TrainResult:
    run: RunDir
    best_metrics: dict[str, float]
    epochs: int


def check_or_refuse(report: dict[str, Any], strict: bool) -> None:
    """Log the data check's findings; with ``data.strict`` refuse leakage or label conflicts."""
    for line in summary_lines(report):
        bad = line.startswith(
            ("LEAKAGE", "LABEL CONFLICT", "TINY", "PATIENTS?", "SPLIT SHIFT", "SIZE")
        )
        (log.warning if bad else log.info)("data check: %s", line)
    if strict and not report["passed"]:
        raise MedclfError(
            "data check failed (leakage across splits or label conflicts, listed above) and "
            "data.strict=true; fix the data, or set data.strict=false to train anyway"
        )


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow's database set-up notices and Lightning's "experiment not found, creating it".
    for name in ("mlflow", "alembic", "lightning.pytorch.loggers.mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*on_after_batch_transfer.*",
        ".*tensorboardX.*",
        ".*is smaller than the logging interval.*",
        # intentional: the EMA copy and frozen batch-norm layers stay in eval mode
        ".*module\\(s\\) in eval mode.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def train(cfg: DictConfig, keep: tuple[str, ...] = ()) -> TrainResult:
    """A new run from ``cfg``. With ``recipe: auto`` the recipe sets every key it chooses
    except those under ``keep`` (the command line's own keys; ``medclf.words.keys``)."""
    return _fit(cfg, resume_from=None, keep=keep)


def plan_recipe(cfg: DictConfig, keep: tuple[str, ...] = ()) -> str | None:
    """``medclf train --dry-run``: resolve the recipe into ``cfg`` without training; returns
    the recipe's one line (None with recipe=none)."""
    resolve_pretrained(cfg.model)
    prepared = prepare_data(cfg.data, save_memo=False)
    return _choose_recipe(cfg, prepared, keep)


def resolve_pretrained(model_cfg: DictConfig) -> None:
    """``model.pretrained=auto`` -> true when the weights are cached or downloadable, else
    false with one notice (training from scratch is the offline default, not an error)."""
    if str(model_cfg.get("pretrained")) != "auto":
        return
    from medclf.models.architectures import is_custom, timm_name
    from medclf.models.factory import check_model_name
    from medclf.models.weights import weights_available

    # An unknown architecture is the one error to report, not a weights notice before it.
    check_model_name(model_cfg)

    name = str(model_cfg.name)
    ok, why = (False, "custom") if is_custom(name) else weights_available(timm_name(name))
    if not ok and why != "custom":
        log.info(
            "model.pretrained=auto: no ImageNet weights for %s (%s); training from scratch",
            name,
            why,
        )
    with open_dict(model_cfg):
        model_cfg.pretrained = ok


def _choose_recipe(cfg: DictConfig, prepared: PreparedData, keep: tuple[str, ...]) -> str | None:
    if str(cfg.get("recipe", "none")) != "auto":
        return None
    from medclf.training.recipe import choose

    recipe = choose(cfg, prepared.table, prepared.scanned, keep)
    return recipe.line(cfg)


def resume(run_path: str | Path, overrides: list[str] | None = None) -> TrainResult:
    """Continue ``RUN`` from ``weights/last.ckpt``: same config, split, statistics and stage,
    with the optimizer, scheduler, early-stopping and random states it was saved with."""
    run = RunDir.open(run_path, need_weights=False)
    for item, key in zip(overrides or [], keys(overrides or []), strict=True):
        if key not in RESUME_OVERRIDES:
            raise MedclfError(
                f"'{item}': a resumed run keeps its configuration (in {run.config}); only "
                f"{', '.join(RESUME_OVERRIDES)} may be changed"
            )
    if run.summary.is_file():
        raise MedclfError(
            f"resume={run_path} already finished training ({run.summary.name} exists); start a "
            "new run with 'medclf train' (data.split_file= reuses its split)"
        )
    if not run.last_ckpt.is_file():
        raise MedclfError(
            f"resume={run_path}: no weights/last.ckpt, so it stopped before its first epoch "
            "ended; nothing to resume. Start it again with 'medclf train'"
        )
    # Refuse a damaged or code-carrying checkpoint with one line, before any other work.
    load_checkpoint(run.last_ckpt)
    cfg = OmegaConf.load(run.config)
    apply_overrides(cfg, list(overrides or []))
    with open_dict(cfg):
        # The saved split, not a re-split: refuses if any image changed since.
        cfg.data.split_file = str(run.split)
    OmegaConf.set_struct(cfg, True)
    return _fit(cfg, resume_from=run)


def _fit(cfg: DictConfig, resume_from: RunDir | None, keep: tuple[str, ...] = ()) -> TrainResult:
    if resume_from is None:
        resolve_pretrained(cfg.model)
    if cfg.model.get("pretrained") and not cfg.model.get("weights") and resume_from is None:
        _check_pretrained_available(cfg.model)
    # Validate the data first: a bad path fails in a second, before the heavy imports.
    prepared = prepare_data(cfg.data, save_memo=False)
    if resume_from is None and (line := _choose_recipe(cfg, prepared, keep)):
        log.info("%s", line)
    from medclf.models.architectures import resolve_input_config
    from medclf.models.factory import check_model_name
    from medclf.training.loggers import logger_names
    from medclf.training.stages import resolve_stages

    check_model_name(cfg.model)
    model_defaults = resolve_input_config(cfg)
    stages = resolve_stages(cfg.train, bool(cfg.model.get("freeze_backbone")))
    logger_names(cfg.get("logger"))
    # Enumerated values were checked at compose (config_checks); what needs the machine is
    # checked here, before the run folder exists: a typo never leaves a half-written run.
    device_flags = _device_flags(cfg)
    check_or_refuse(prepared.report, bool(cfg.data.strict))
    table = prepared.table

    import lightning as L

    from medclf.data.stats import train_images
    from medclf.models import build_model
    from medclf.training.losses import build_loss

    quiet_lightning()
    provisional = provisional_preprocessing(cfg.data, table)
    classes, channels = list(provisional.class_names), provisional.channels
    train_labels = table.loc[table["split"] == "train", "label"]
    train_counts = [int((train_labels == c).sum()) for c in classes]
    loss = build_loss(cfg.train.loss, train_counts)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model_cfg = cfg.model
    if resume_from is not None:
        # last.ckpt restores every weight: never re-read model.weights or contact the hub.
        plain = OmegaConf.to_container(cfg.model, resolve=True)
        model_cfg = OmegaConf.create({**plain, "pretrained": False, "weights": None})
    model = build_model(
        model_cfg, num_classes=len(classes), in_chans=channels, image_size=provisional.image_size
    )
    prepared.save_memo()
    cache = None
    if cfg.data.cache:
        cache, built = prepared.build_cache(cfg.data.cache_dir, provisional)
        log.info("image cache: %s %s", "built" if built else "reused", cache.root)

    if resume_from is not None:
        run = resume_from
        prep = Preprocessing.load_file(run.preprocessing)
        log.info("resuming %s from %s", run.root, run.last_ckpt)
        _log_data_summary(table, classes)
        return _run_trainer(
            cfg, run, prepared, prep, cache, model, loss, stages, train_counts, device_flags
        )
    model_stats = (model_defaults.mean, model_defaults.std) if model_defaults else None
    mean, std = normalization_stats(
        str(cfg.data.normalize),
        channels,
        train_images(cache, table, provisional),
        model_stats=model_stats,
    )
    prep = dataclasses.replace(provisional, mean=mean, std=std)
    run = RunDir.create(cfg.runs_root, str(cfg.run_group), str(cfg.model.name))
    try:
        write_text(run.config, OmegaConf.to_yaml(cfg, resolve=True))
        save_split(table, run.split)
        prep.save(run.preprocessing)
        write_json(run.data_check, prepared.report)
        log.info("data check: full report in %s", run.data_check)
        _log_data_summary(table, classes)
        return _run_trainer(
            cfg, run, prepared, prep, cache, model, loss, stages, train_counts, device_flags
        )
    except BaseException:
        _discard_unstarted(run)
        raise


def _discard_unstarted(run: RunDir) -> None:
    """A new run that failed (or was interrupted) before its first checkpoint holds nothing
    to evaluate or resume: remove it rather than leave a folder that looks like a run."""
    if run.last_ckpt.is_file() or run.best_ckpt.is_file():
        return
    shutil.rmtree(run.root, ignore_errors=True)
    with contextlib.suppress(OSError):
        run.root.parent.rmdir()  # the experiment folder, if this was its only run


def _check_pretrained_available(model_cfg: Any) -> None:
    """Offline without cached weights: fail in seconds, before the data is scanned."""
    from medclf.models.architectures import is_custom, timm_name
    from medclf.models.factory import check_model_name
    from medclf.models.weights import pretrained_kwargs

    if is_custom(str(model_cfg.name)):
        return  # build_model explains that custom_cnn has no pretrained weights
    check_model_name(model_cfg)
    pretrained_kwargs(timm_name(str(model_cfg.name)), True, None)


def _log_data_summary(table: Any, classes: list[str]) -> None:
    counts = table.groupby("split").size().to_dict()
    log.info(
        "data: %s classes (%s); train %d, val %d, test %d images",
        len(classes),
        ", ".join(classes),
        counts.get("train", 0),
        counts.get("val", 0),
        counts.get("test", 0),
    )


def _device_flags(cfg: DictConfig) -> tuple[str, bool, bool]:
    """(precision, channels_last, compile) for the machine. On a CPU, bf16-mixed runs where
    the processor has bf16 units (AVX512-BF16/AMX: about 2x faster for resnet18 training on
    such a Xeon) and channels_last always works; 16-mixed and compile stay GPU-only."""
    import torch

    from medclf.training.hardware import cpu_has_bf16

    precision = str(cfg.train.precision)  # one of choices.PRECISIONS (checked at compose)
    channels_last, compile_ = bool(cfg.train.channels_last), bool(cfg.train.compile)
    accelerator = str(cfg.train.accelerator)
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if not on_gpu:
        cpu_ok = precision in ("32", "32-true") or (precision == "bf16-mixed" and cpu_has_bf16())
        ignored = [] if cpu_ok else [f"train.precision={precision}"]
        ignored += ["train.compile=true"] if compile_ else []
        if ignored:
            warnings.warn(
                f"no GPU: {', '.join(ignored)} ignored"
                + ("" if cpu_ok else "; training in 32-bit on the CPU"),
                stacklevel=2,
            )
        return (precision if cpu_ok else "32"), channels_last, False
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        raise MedclfError("train.precision=bf16-mixed: this GPU has no bf16; use 16-mixed")
    return precision, channels_last, compile_


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


def _run_trainer(
    cfg: DictConfig,
    run: RunDir,
    prepared: PreparedData,
    prep: Preprocessing,
    cache: Any,
    model: Any,
    loss: Any,
    stages: list[Any],
    train_counts: list[int],
    device_flags: tuple[str, bool, bool],
) -> TrainResult:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from medclf.data.datamodule import CachedBatches, DecodedBatches, ImageDataModule
    from medclf.training.callbacks import (
        AtomicCheckpointIO,
        EpochMetricsCSV,
        ProgressBar,
        RNGState,
        StageEarlyStopping,
    )
    from medclf.training.curves import plot_training_curves
    from medclf.training.loggers import build_loggers, log_run_files
    from medclf.training.module import Classifier

    table = prepared.table
    classes = list(prep.class_names)
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
    train_weights = None
    if cfg.train.get("sampler") == "weighted":
        per_class = [1.0 / max(n, 1) for n in train_counts]
        train_weights = [per_class[i] for i in datasets["train"].labels]
    dm = ImageDataModule(
        datasets,
        int(cfg.data.batch_size),
        int(cfg.data.num_workers),
        train_weights=train_weights,
    )

    precision, channels_last, compile_ = device_flags
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model.compile()  # in place: parameter names (and checkpoints) stay those of the model
    meta: dict[str, Any] = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "num_classes": len(classes),
        "in_chans": prep.channels,
        "preprocessing": prep.to_dict(),
    }
    monitor, mode = resolve_monitor(str(cfg.train.monitor), str(cfg.train.monitor_mode))
    mixup = OmegaConf.to_container(cfg.train.mixup, resolve=True)
    mixup["label_smoothing"] = float(cfg.train.loss.label_smoothing or 0.0)
    module = Classifier(
        model,
        num_classes=len(classes),
        stages=stages,
        loss=loss,
        augment=OmegaConf.to_container(cfg.data.augment, resolve=True),
        mean=prep.mean,
        std=prep.std,
        image_size=prep.image_size,
        monitor=monitor,
        monitor_mode=mode,
        mixup=mixup,
        ema_decay=float(cfg.train.ema.decay) if cfg.train.ema.enabled else None,
        channels_last=channels_last,
        checkpoint_meta=meta,
    )
    # Both saved after validation and after metrics.csv got the epoch's row, so a checkpoint
    # never covers an epoch metrics.csv lacks and a resume after a kill loses no rows.
    best_ckpt = ModelCheckpoint(
        dirpath=run.best_ckpt.parent,
        filename=run.best_ckpt.stem,
        monitor=monitor,
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
    callbacks: list[L.Callback] = [RNGState(), epoch_log, best_ckpt, last_ckpt]
    if any(s.early_stopping for s in stages):
        callbacks.append(
            StageEarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=int(cfg.train.early_stopping.patience),
                min_delta=float(cfg.train.early_stopping.min_delta),
            )
        )
    if cfg.train.progress_bar:
        callbacks.append(ProgressBar())
    loggers = build_loggers(cfg, run)
    for lg in loggers:  # each Lightning logger flattens nested keys itself (train/lr)
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if stages[0].trainable != "all" or len(stages) > 1:
        plan = [f"{s.name}: {s.epochs} ep, trains {s.trainable}, {s.optimizer}" for s in stages]
        log.info("stages: %s", "; ".join(plan))
    trainer = L.Trainer(
        default_root_dir=run.root,
        max_epochs=sum(s.epochs for s in stages),
        accelerator=str(cfg.train.accelerator),
        devices=cfg.train.devices,
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
        profiler=_profiler(cfg.train.get("profiler"), run),
        min_epochs=cfg.train.get("min_epochs"),
        max_time=_max_time(cfg.train.get("time_budget")),
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    resume_ckpt = str(run.last_ckpt) if run.last_ckpt.is_file() else None
    # weights_only: a planted last.ckpt must not run code (already read once by resume()).
    trainer.fit(module, datamodule=dm, ckpt_path=resume_ckpt, weights_only=True)
    if not run.best_ckpt.is_file():
        raise MedclfError(f"training finished without a checkpoint in {run.best_ckpt.parent}")
    plot_training_curves(run.metrics_csv, run.curves_png)
    best = _best_epoch_row(epoch_log.rows, monitor, mode)
    write_json(
        run.summary,
        {
            "epochs": trainer.current_epoch,
            "stages": [s.name for s in stages],
            "monitor": monitor,
            "best": best,
            "loggers": {lg.label: not lg.failed for lg in loggers},
            # checked by every later load of best.ckpt (medclf.models.checkpoint)
            SUMMARY_DIGEST_KEY: file_sha256(run.best_ckpt),
        },
    )
    log_run_files(loggers, run)
    return TrainResult(run=run, best_metrics=best, epochs=trainer.current_epoch)


def _max_time(budget: Any) -> Any:
    """Lightning's wall-clock stop at 1.15 x ``train.time_budget``: a guard for the recipe's
    estimate (a slower machine than the probe saw), not the plan itself."""
    import datetime

    from medclf.training.recipe import parse_duration

    seconds = parse_duration(budget)
    return None if seconds is None else datetime.timedelta(seconds=1.15 * seconds)


def _best_epoch_row(rows: list[dict[str, Any]], monitor: str, mode: str) -> dict[str, float]:
    scored = [r for r in rows if r.get(monitor) is not None]
    if not scored:
        return {}
    pick = min if mode == "min" else max
    best = pick(scored, key=lambda r: r[monitor])
    return {
        k: float(v) for k, v in best.items() if k == "epoch" or k.startswith(("val/", "train/"))
    }
