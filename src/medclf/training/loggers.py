"""Experiment trackers (``logger=[tensorboard,mlflow,wandb,csv]``) that never stop training.

Each tracker is one of Lightning's loggers wrapped in ``FailSoftLogger``: if it cannot start
(missing package, unreachable server, bad URI) it is reported and dropped before training;
if it fails later, it is reported once and switched off, and training continues. The run
folder (``metrics.csv``, checkpoints) is the record that never depends on a tracker.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from lightning.pytorch.loggers import Logger

from medclf.atomic import write_json
from medclf.errors import MedclfError
from medclf.rundir import RunDir
from medclf.tracking import logger_names

log = logging.getLogger("medclf")


class FailSoftLogger(Logger):
    def __init__(self, inner: Logger, label: str) -> None:
        super().__init__()
        self.inner = inner
        self.label = label
        self.failed = False

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        if self.failed:
            return None
        try:
            return fn()
        except Exception as exc:  # any tracker error must not end training
            self.failed = True
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            log.warning(
                "logger %s failed during %s (%s: %s); it is switched off, training continues",
                self.label,
                what,
                type(exc).__name__,
                first,
            )
            return None

    @property
    def name(self) -> str:
        return self.inner.name or self.label

    @property
    def version(self) -> Any:
        return self.inner.version

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    @property
    def log_dir(self) -> str | None:
        return getattr(self.inner, "log_dir", None)

    @property
    def experiment(self) -> Any:
        return self.inner.experiment

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._guard("log_metrics", lambda: self.inner.log_metrics(metrics, step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", lambda: self.inner.log_hyperparams(params, *args, **kwargs))

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self._guard("log_graph", lambda: self.inner.log_graph(model, input_array))

    def save(self) -> None:
        self._guard("save", self.inner.save)

    def finalize(self, status: str) -> None:
        self._guard("finalize", lambda: self.inner.finalize(status))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guard(
            "after_save_checkpoint", lambda: self.inner.after_save_checkpoint(checkpoint_callback)
        )

    def call(self, what: str, fn: Callable[[Logger], Any]) -> Any:
        """Run ``fn(inner)`` under the same guard (used for artifacts at the end of training)."""
        return self._guard(what, lambda: fn(self.inner))


def _mlflow(cfg: Any, run: RunDir) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    from medclf import tracking

    tracking.quiet_and_bounded()
    uri = tracking.prepare_uri(str(cfg.mlflow.tracking_uri))
    record = run.logs / "mlflow.json"
    run_id = None
    if record.is_file():  # resuming: continue the same MLflow run
        run_id = json.loads(record.read_text(encoding="utf-8")).get("run_id")
    logger = MLFlowLogger(
        experiment_name=str(cfg.mlflow.experiment or cfg.run_group),
        run_name=run.name,
        tracking_uri=uri,
        artifact_location=tracking.artifact_location(uri, cfg.runs_root),
        run_id=run_id,
        tags={
            "medclf.run_dir": str(run.root.resolve()),
            **({"mlflow.parentRunId": str(cfg.mlflow.parent_run)} if cfg.mlflow.parent_run else {}),
        },
    )
    _ = logger.experiment  # connect now: a bad URI is reported before training starts
    write_json(record, {"tracking_uri": uri, "run_id": logger.run_id})
    return logger


def _wandb(cfg: Any, run: RunDir) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        raise MedclfError("wandb is not installed (pip install wandb)") from exc
    mode = str(cfg.wandb.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    run.logs.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        project=str(cfg.wandb.project),
        name=run.name,
        save_dir=str(run.logs),
        offline=mode == "offline",
        mode=mode,
        id=run.name,
        resume="allow",
    )
    _ = logger.experiment
    return logger


def _tensorboard(cfg: Any, run: RunDir) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run.logs), name="tensorboard", version="")


def _csv(cfg: Any, run: RunDir) -> Logger:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(run.logs), name="csv", version="")


# one builder per name that medclf.choices.LOGGERS (and so the schema) allows
BUILDERS: dict[str, Callable[[Any, RunDir], Logger]] = {
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
    "wandb": _wandb,
    "csv": _csv,
}


def build_loggers(cfg: Any, run: RunDir) -> list[FailSoftLogger]:
    loggers = []
    for name in logger_names(cfg.get("logger")):
        try:
            loggers.append(FailSoftLogger(BUILDERS[name](cfg, run), name))
        except Exception as exc:  # a tracker must never block training
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            log.warning(
                "logger %s could not start (%s: %s); training continues without it",
                name,
                type(exc).__name__,
                first,
            )
    return loggers


def log_run_files(loggers: Iterable[FailSoftLogger], run: RunDir) -> None:
    """Attach the run folder's records (config, split, preprocessing, checks, metrics, curves,
    best weights) to trackers that store artifacts (MLflow)."""
    files = [
        p
        for p in (
            run.config,
            run.split,
            run.preprocessing,
            run.data_check,
            run.metrics_csv,
            run.curves_png,
            run.best_ckpt,
        )
        if p.is_file()
    ]
    for lg in loggers:
        if lg.label != "mlflow" or lg.failed:
            continue

        def upload(inner: Any) -> None:
            for path in files:
                sub = path.parent.relative_to(run.root).as_posix()
                inner.experiment.log_artifact(
                    inner.run_id, str(path), artifact_path=None if sub == "." else sub
                )

        lg.call("log_artifacts", upload)
