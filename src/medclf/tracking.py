"""MLflow connections, set up one way for the training logger and the model registry.

Any MLflow URI works (a sqlite file, a database URL, http(s)://host:5000). Three things are
decided here once: a tracking server that is down costs seconds, not MLflow's default minutes
of retries; a sqlite file's folder is created; and with a database store, new experiments keep
their artifacts under ``runs_root`` instead of ``./mlruns`` of whatever folder a command ran in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_TIMEOUT_S = 10


def quiet_and_bounded() -> None:
    """MLflow's INFO logging and its per-file download bars off (a registered version is a
    dozen small files and one model; medclf prints one line); HTTP calls fail within seconds
    (unless the user chose)."""
    import mlflow  # noqa: F401 - configures its loggers on import; quiet them afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def artifact_location(uri: str, runs_root: str | Path) -> str | None:
    """Where a new experiment's artifacts go: under ``runs_root`` for a database store; a
    tracking server or file store decides for itself (None). An existing experiment keeps its
    location."""
    if scheme(uri) not in DATABASE_SCHEMES:
        return None
    return (Path(str(runs_root)).expanduser().resolve() / "mlartifacts").as_uri()


def prepare_uri(uri: str) -> str:
    """Create a sqlite file's folder; check that a tracking server answers (within
    ``SERVER_TIMEOUT_S``), so an unreachable server is one line, not a hang."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif scheme(uri) in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S).raise_for_status()
        except requests.RequestException as exc:
            raise MedclfError(
                f"mlflow.tracking_uri={uri}: the tracking server does not answer "
                f"({type(exc).__name__}); start it, or set mlflow.tracking_uri to a reachable "
                "server or a sqlite file"
            ) from None
    return uri


def client(uri: str) -> Any:
    """An MlflowClient for tracking and registry at ``uri``, checked to be reachable."""
    quiet_and_bounded()
    from mlflow.tracking import MlflowClient

    prepare_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def open_parent(cfg: Any, name: str, tags: dict[str, str]) -> str | None:
    """A parent MLflow run for the runs of a study or a sweep (they log under it as children,
    ``mlflow.parent_run``), in the experiment they log to; None when MLflow is not among the
    loggers, or fails (the runs then log on their own, as any tracker failure is handled)."""
    if "mlflow" not in logger_names(cfg.logger):
        return None
    uri = str(cfg.mlflow.tracking_uri)
    name_of_experiment = str(cfg.mlflow.experiment or cfg.run_group)
    try:
        mlflow_client = client(uri)
        experiment = mlflow_client.get_experiment_by_name(name_of_experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else mlflow_client.create_experiment(
                name_of_experiment, artifact_location=artifact_location(uri, cfg.runs_root)
            )
        )
        return mlflow_client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    except Exception as exc:  # MLflow's own errors; a tracker never stops the work
        logging.getLogger("medclf").warning("mlflow: no parent run (%s)", str(exc)[:200])
        return None


def close_parent(
    cfg: Any, run_id: str | None, failed: bool = False, metrics: dict[str, float] | None = None
) -> None:
    """End the parent run (FINISHED, or FAILED when some child failed), logging ``metrics``
    on it first (a cross-validation's mean over its folds)."""
    if run_id is None:
        return
    try:
        tracker = client(str(cfg.mlflow.tracking_uri))
        for key, value in (metrics or {}).items():
            tracker.log_metric(run_id, key, float(value))
        tracker.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    except Exception as exc:  # as above
        logging.getLogger("medclf").warning("mlflow: parent run not closed (%s)", str(exc)[:200])


def logger_names(value: Any) -> list[str]:
    """``logger`` as a list of names (a single name or null are accepted; the names were
    checked at compose)."""
    if value is None or value is False:
        return []
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(names))
