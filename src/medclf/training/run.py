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
from medclf.data.prepare import PreparedData, prepare_data, provisional_preprocessing
from medclf.data.split import save_split
from medclf.errors import MedclfError
from medclf.metric_names import best_epoch_metric
from medclf.models.checkpoint import load_checkpoint
from medclf.preprocessing import Preprocessing
from medclf.run_config import load_run_config
from medclf.rundir import RunDir
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
        # under DDP the epoch's speed and load figures are rank 0's own (it writes the row)
        ".*when logging on epoch level in distributed setting.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def train(
    cfg: DictConfig, keep: tuple[str, ...] = (), extra_callbacks: tuple[Any, ...] = ()
) -> TrainResult:
    """A new run from ``cfg``. With ``recipe: auto`` the recipe sets every key it chooses
    except those under ``keep`` (the command line's own keys; ``medclf.words.keys``).
    ``extra_callbacks``: Lightning callbacks of the caller (``medclf tune``'s pruning).
    Under DDP a rank > 0 joins rank 0's run instead (``training.ddp``)."""
    from medclf.training import ddp

    folder = ddp.joining_folder(cfg)
    if folder is not None:
        return join(folder)
    return _fit(cfg, resume_from=None, keep=keep, extra_callbacks=extra_callbacks)


def join(folder: Path) -> TrainResult:
    """A DDP rank > 0: train rank 0's run with its config, split and preprocessing, writing
    nothing (``training.ddp``)."""
    from medclf.training import ddp

    ddp.quiet_other_ranks()
    run = ddp.wait_for_run(folder)
    cfg = load_run_config(run.config)
    with open_dict(cfg):
        cfg.data.split_file = str(run.split)  # rank 0's split, not a re-split
    OmegaConf.set_struct(cfg, True)
    return _fit(cfg, resume_from=run)


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
    if str(cfg.recipe) != "auto":
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
    cfg = load_run_config(run.config)
    apply_overrides(cfg, list(overrides or []))
    with open_dict(cfg):
        # The saved split, not a re-split: refuses if any image changed since.
        cfg.data.split_file = str(run.split)
    OmegaConf.set_struct(cfg, True)
    return _fit(cfg, resume_from=run)


def _fit(
    cfg: DictConfig,
    resume_from: RunDir | None,
    keep: tuple[str, ...] = (),
    extra_callbacks: tuple[Any, ...] = (),
) -> TrainResult:
    """check and plan -> model, loss, cache -> the run folder (new, or the resumed one) -> train."""
    from medclf.training import ddp

    prepared, stages, device_flags, model_defaults = check_and_plan(cfg, resume_from, keep)
    parts = _ingredients(cfg, prepared, stages, device_flags, resume_from)
    if resume_from is not None:
        parts.prep = Preprocessing.load_file(resume_from.preprocessing)
        if resume_from.last_ckpt.is_file():
            log.info("resuming %s from %s", resume_from.root, resume_from.last_ckpt)
        _log_data_summary(prepared.table, list(parts.prep.class_names))
        return _run_trainer(cfg, resume_from, parts)
    parts.prep = _with_statistics(cfg, parts, model_defaults)
    run = RunDir.create(cfg.runs_root, str(cfg.run_group), str(cfg.model.name), cfg.run_name)
    try:
        _write_inputs(cfg, run, parts)
        ddp.announce(cfg, run)
        return _run_trainer(cfg, run, parts, extra_callbacks)
    except BaseException:
        _discard_unstarted(run)
        raise


def check_and_plan(
    cfg: DictConfig, resume_from: RunDir | None, keep: tuple[str, ...]
) -> tuple[PreparedData, list[Any], tuple[str, bool, bool], Any]:
    """Everything that can refuse, before the run folder exists and before the heavy imports:
    pretrained weights, the data and its check, the recipe, the model name, stages, loggers
    and the device. Returns (prepared data, stages, device flags, the model's input defaults)."""
    if resume_from is None:
        if cfg.run_name:  # a fixed run folder that already holds a training: refused now
            RunDir.check_name_free(Path(cfg.runs_root) / str(cfg.run_group) / cfg.run_name)
        resolve_pretrained(cfg.model)
        if cfg.model.get("pretrained") and not cfg.model.get("weights"):
            _check_pretrained_available(cfg.model)
    # Validate the data first: a bad path fails in a second, before the heavy imports.
    prepared = prepare_data(cfg.data, save_memo=False)
    if resume_from is None and (line := _choose_recipe(cfg, prepared, keep)):
        log.info("%s", line)
    from medclf.models.architectures import resolve_input_config
    from medclf.models.factory import check_model_name
    from medclf.training.stages import resolve_stages

    check_model_name(cfg.model)
    model_defaults = resolve_input_config(cfg)
    stages = resolve_stages(cfg.train, bool(cfg.model.get("freeze_backbone")))
    _check_stages_for_ddp(cfg, stages)
    # Every value was checked against the schema at compose (medclf.schema); what needs the
    # data or the machine is
    # checked here, before the run folder exists: a typo never leaves a half-written run.
    device_flags = _device_flags(cfg)
    check_or_refuse(prepared.report, bool(cfg.data.strict))
    return prepared, stages, device_flags, model_defaults


def _check_stages_for_ddp(cfg: DictConfig, stages: list[Any]) -> None:
    """DDP all-reduces the gradients of the parameters trainable when it wraps the model:
    a later stage that unfreezes more would train them apart on every rank, silently."""
    from medclf.training import ddp

    if ddp.distributed(cfg) and len({str(s.trainable) for s in stages}) > 1:
        plan = ", ".join(f"{s.name}: trains {s.trainable}" for s in stages)
        raise MedclfError(
            f"train.stages ({plan}): under DDP (train.devices/num_nodes) every stage must train "
            "the same parameters; train the stages with train.devices=1, or give one stage"
        )


def _ingredients(
    cfg: DictConfig,
    prepared: PreparedData,
    stages: list[Any],
    device_flags: tuple[str, bool, bool],
    resume_from: RunDir | None,
) -> Ingredients:
    """The model, the loss (weighted by the training counts) and the decode-once cache."""
    import lightning as L

    from medclf.models import build_model
    from medclf.training import ddp
    from medclf.training.losses import build_loss

    quiet_lightning()
    table = prepared.table
    provisional = provisional_preprocessing(cfg.data, table)
    classes = list(provisional.class_names)
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
        model_cfg,
        num_classes=len(classes),
        in_chans=provisional.channels,
        image_size=provisional.image_size,
    )
    if ddp.rank() == 0:  # a DDP rank > 0 reads what rank 0 scanned and cached
        prepared.save_memo()
    cache = None
    if cfg.data.cache:
        cache, built = prepared.build_cache(cfg.data.cache_dir, provisional)
        log.info("image cache: %s %s", "built" if built else "reused", cache.root)
    return Ingredients(
        prepared, provisional, cache, model, loss, stages, train_counts, device_flags
    )


def _with_statistics(cfg: DictConfig, parts: Ingredients, model_defaults: Any) -> Preprocessing:
    """The preprocessing record with its normalization: the training split's statistics or
    the pretrained model's (``data.normalize``)."""
    from medclf.data.stats import normalization_stats, train_images

    model_stats = (model_defaults.mean, model_defaults.std) if model_defaults else None
    mean, std = normalization_stats(
        str(cfg.data.normalize),
        parts.prep.channels,
        train_images(parts.cache, parts.prepared.table, parts.prep),
        model_stats=model_stats,
    )
    return dataclasses.replace(parts.prep, mean=mean, std=std)


def _write_inputs(cfg: DictConfig, run: RunDir, parts: Ingredients) -> None:
    """What the new run was made from: config, split, preprocessing, data check."""
    write_text(run.config, OmegaConf.to_yaml(cfg, resolve=True))
    save_split(parts.prepared.table, run.split)
    parts.prep.save(run.preprocessing)
    write_json(run.data_check, parts.prepared.report)
    log.info("data check: full report in %s", run.data_check)
    _log_data_summary(parts.prepared.table, list(parts.prep.class_names))


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


@dataclass
class Ingredients:
    """What a run trains with, prepared before its folder exists (or found in it, on resume)."""

    prepared: PreparedData
    prep: Preprocessing
    cache: Any
    model: Any
    loss: Any
    stages: list[Any]
    train_counts: list[int]
    device_flags: tuple[str, bool, bool]  # precision, channels_last, compile


def _run_trainer(
    cfg: DictConfig, run: RunDir, parts: Ingredients, extra_callbacks: tuple[Any, ...] = ()
) -> TrainResult:
    """batches -> module -> callbacks and loggers -> trainer -> fit -> summary."""
    from medclf.training import ddp
    from medclf.training import trainer as build
    from medclf.training.loggers import build_loggers, log_run_files

    monitor = best_epoch_metric(str(cfg.train.monitor), str(cfg.train.monitor_mode))
    table, prep = parts.prepared.table, parts.prep
    datamodule = build.build_datamodule(cfg, table, prep, parts.cache, parts.train_counts)
    module = build.build_module(
        cfg, parts.model, prep, parts.stages, parts.loss, monitor, parts.device_flags
    )
    callbacks, epoch_log = build.build_callbacks(cfg, run, parts.stages, monitor)
    callbacks += list(extra_callbacks)
    writer = ddp.rank() == 0  # under DDP only rank 0 writes the run and its trackers
    loggers = build_loggers(cfg, run) if writer else []
    for lg in loggers:  # each Lightning logger flattens nested keys itself (train/lr)
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    _log_stages(parts.stages)
    precision = parts.device_flags[0]
    trainer = build.build_trainer(cfg, run, parts.stages, callbacks, loggers, precision)
    resume_ckpt = str(run.last_ckpt) if run.last_ckpt.is_file() else None
    # weights_only: a planted last.ckpt must not run code (already read once by resume()).
    with ddp.one_fit():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt, weights_only=True)
    epochs = trainer.current_epoch
    if not trainer.is_global_zero:
        return TrainResult(run=run, best_metrics={}, epochs=epochs)
    best = build.summarize(run, epochs, parts.stages, monitor, epoch_log.rows, loggers)
    log_run_files(loggers, run)
    return TrainResult(run=run, best_metrics=best, epochs=epochs)


def _log_stages(stages: list[Any]) -> None:
    if stages[0].trainable != "all" or len(stages) > 1:
        plan = [f"{s.name}: {s.epochs} ep, trains {s.trainable}, {s.optimizer}" for s in stages]
        log.info("stages: %s", "; ".join(plan))
