"""``medclf register RUN name=NAME``: a run's export becomes a new registered model version.

Everything that can be refused is checked before MLflow is touched (the name, the alias, the
run's weights, a current export, an evaluation and its gates when an alias is asked). Once
MLflow holds a version, a later failure deletes it again and marks its MLflow run failed:
nothing is left half-registered.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclf import tracking
from medclf.errors import MedclfError
from medclf.formatting import interval, number
from medclf.inference import records
from medclf.inference.release import test_evaluation, training_data
from medclf.models.checkpoint import model_version, verified_best_digest
from medclf.registry import aliases
from medclf.registry.fetch import RUN_ARTIFACTS
from medclf.registry.names import TAG_GATES_FAILED, TAG_GATES_PASSED, check_alias, check_name
from medclf.rundir import RunDir
from medclf.version import __version__

EXPERIMENT = "medclf-registry"
ARTIFACTS = ("report.html", "model_card.md", "metrics.json", "gates.json")


@dataclass
class Release:
    """What ``register`` found in the run folder, all checked."""

    run: RunDir
    onnx: Path
    metadata: dict[str, Any]
    # the latest test evaluation of these weights (metrics with intervals, gates); None: never
    evaluation: dict[str, Any] | None
    extra: list[Path] = field(default_factory=list)  # run files logged beside the model


@dataclass
class Registered:
    name: str
    version: int
    alias: str | None
    tags: dict[str, str]


def _current_export(run: RunDir) -> tuple[Path, dict[str, Any]]:
    onnx, meta_path = run.export_dir / records.FP32_FILE, run.export_dir / records.EXPORT_METADATA
    if not onnx.is_file() or not meta_path.is_file():
        raise MedclfError(
            f"{run.root}: no export to register; run 'medclf export model={run.root}' first"
        )
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    weights = model_version(verified_best_digest(run))
    if (metadata.get("model") or {}).get("version") != weights:
        raise MedclfError(
            f"{run.root}: export/model.onnx was made from other weights than weights/best.ckpt "
            f"({weights}); export again with 'medclf export model={run.root}'"
        )
    return onnx, metadata


def check_release(run_dir: str | Path, alias: str | None, force: bool, reason: str | None):
    run = RunDir.open(run_dir)
    onnx, metadata = _current_export(run)
    # the run's latest evaluation, which may be newer than the export's copy of it
    evaluation = test_evaluation(run, str(metadata["model"]["version"]))
    if alias:
        gates = evaluation["gates"] if evaluation else None
        aliases.check_promotion(gates, alias, force, reason, f"model={run.root}")
    return Release(run, onnx, metadata, evaluation, _run_files(run))


def _run_files(run: RunDir) -> list[Path]:
    """The run's files logged beside the model, at their places in the run folder, so a
    fetched version is a run folder without weights (``evaluate`` and ``compare`` take it):
    the settings and split, the export's records (and the INT8 file, logged but not
    registered) and the test evaluation's evidence."""
    test_dir = run.eval_dir("test")
    files = [run.config, run.preprocessing, run.split, run.model_card]
    files += [run.export_dir / records.EXPORT_METADATA, run.export_dir / "parity.json"]
    files += [run.export_dir / records.INT8_FILE] + [test_dir / f for f in ARTIFACTS]
    return [f for f in files if f.is_file()]


def _git_commit() -> str | None:
    """The commit of the medclf source that registers, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def version_tags(release: Release, user_tags: dict[str, str]) -> dict[str, str]:
    tags = {
        "medclf.version": __version__,
        "medclf.model_version": str(release.metadata["model"]["version"]),
        "medclf.run_dir": str(release.run.root.resolve()),
        "medclf.data_fingerprint": training_data(release.run)["split_csv_sha256"],
        TAG_GATES_PASSED: "not evaluated",
    }
    if commit := _git_commit():
        tags["medclf.git_commit"] = commit
    evaluation = release.evaluation
    if evaluation:
        for metric, values in evaluation["metrics"].items():
            tags[f"test.{metric}"] = number(values.get("value"))
            tags[f"test.{metric}.ci"] = interval(values)
        tags[TAG_GATES_PASSED] = "true" if evaluation["gates"]["passed"] else "false"
        tags[TAG_GATES_FAILED] = "; ".join(evaluation["gates"]["failed"])
    return {**tags, **user_tags}


def _signature(metadata: dict[str, Any]) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    shape = tuple(-1 if d == "batch" else int(d) for d in metadata["inputs"][0]["shape"])
    classes = len(metadata["preprocessing"]["class_names"])
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), shape, "input")]),
        outputs=Schema(
            [
                TensorSpec(np.dtype(np.float32), (-1, classes), "logits"),
                TensorSpec(np.dtype(np.float32), (-1, classes), "probabilities"),
            ]
        ),
    )


def _requirements() -> list[str]:
    import onnx
    import onnxruntime

    return [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]


def _description(release: Release, text: str | None) -> str:
    card = release.run.model_card
    body = card.read_text(encoding="utf-8") if card.is_file() else ""
    return "\n\n".join(part for part in (text, body) if part) or f"medclf run {release.run.name}"


def register(
    run_dir: str | Path,
    name: str,
    uri: str,
    runs_root: str | Path,
    alias: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    force: bool = False,
    reason: str | None = None,
) -> Registered:
    """check the name, the alias and the run -> log the ONNX model and the run's evidence ->
    register a version with tags and the model card -> set the alias (gated)."""
    check_name(name)
    if alias:
        check_alias(alias)
    release = check_release(run_dir, alias, force, reason)
    client = tracking.client(uri)
    version_tags_ = version_tags(release, dict(tags or {}))
    run_id, version = _log_and_register(client, uri, runs_root, release, name)
    try:
        for key, value in version_tags_.items():
            client.set_model_version_tag(name, str(version), key, value)
        client.update_model_version(name, str(version), _description(release, description))
        if alias:
            aliases.promote(client, name, version, alias, force=force, reason=reason)
    except BaseException:
        client.delete_model_version(name, str(version))
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return Registered(name, version, alias, version_tags_)


def _log_and_register(
    client: Any, uri: str, runs_root: str | Path, release: Release, name: str
) -> tuple[str, int]:
    """A new MLflow run holding the ONNX model (onnx flavor, one file: the embedded digest
    covers its weights) and the evidence files; returns (run id, new version number)."""
    import mlflow
    import onnx

    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            EXPERIMENT, artifact_location=tracking.artifact_location(uri, runs_root)
        )
    )
    run = client.create_run(
        experiment_id, run_name=release.run.name, tags={"medclf.run_dir": str(release.run.root)}
    )
    run_id = run.info.run_id
    try:
        for path in release.extra:
            where = path.parent.relative_to(release.run.root)
            client.log_artifact(run_id, str(path), (Path(RUN_ARTIFACTS) / where).as_posix())
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                onnx.load(release.onnx),
                name="model",
                signature=_signature(release.metadata),
                save_as_external_data=False,
                # stated, so MLflow does not load the model in a subprocess to infer them
                pip_requirements=_requirements(),
                registered_model_name=name,
                await_registration_for=60,
            )
        return run_id, int(info.registered_model_version)
    except BaseException as exc:
        client.set_terminated(run_id, status="FAILED")
        if isinstance(exc, Exception) and not isinstance(exc, MedclfError):
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise MedclfError(f"registering name={name} failed: {first}") from exc
        raise
