"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` as a local ONNX file.

A version is downloaded once into ``<runs_root>/registry-cache/NAME/VERSION-RUNID/`` (keyed by
the version and the MLflow run that holds it, so a registry that was reset never serves a stale
copy) and verified on every load like any exported file (the graph digest embedded at export).
An alias is resolved at each call: moving ``production`` changes what the next command gets.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from medclf import tracking
from medclf.atomic import atomic_dir
from medclf.errors import MedclfError
from medclf.export import records
from medclf.registry import aliases
from medclf.registry.names import ModelRef, parse_ref

CACHE = "registry-cache"


@dataclass(frozen=True)
class Fetched:
    ref: ModelRef
    version: str
    onnx: Path


def resolve(client, ref: ModelRef):
    """The model version a reference names (an alias's current one; no alias or version:
    the newest)."""
    if ref.alias:
        return aliases.by_alias(client, ref.name, ref.alias)
    if ref.version:
        return aliases.get_version(client, ref.name, ref.version)
    found = client.search_model_versions(f"name = '{ref.name}'", max_results=1000)
    if not found:
        raise MedclfError(f"{ref}: no such registered model (see 'medclf registry list')")
    return max(found, key=lambda v: int(v.version))


def fetch(spec: str, uri: str, runs_root: str | Path) -> Fetched:
    ref = parse_ref(spec)
    client = tracking.client(uri)
    version = resolve(client, ref)
    folder = Path(runs_root) / CACHE / ref.name / f"{version.version}-{version.run_id[:12]}"
    onnx = folder / records.FP32_FILE
    if not onnx.is_file():
        _download(ref, str(version.version), uri, folder)
    return Fetched(ref, str(version.version), onnx)


def _download(ref: ModelRef, version: str, uri: str, folder: Path) -> None:
    import mlflow
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # models:/ is resolved by the registry
    with atomic_dir(folder) as tmp:
        try:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{ref.name}/{version}", dst_path=str(tmp), tracking_uri=uri
            )
        except (MlflowException, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise MedclfError(
                f"{ref} (version {version}): its artifacts could not be downloaded ({first}); "
                "the files may have been deleted from the artifact store: register the run "
                "again"
            ) from None
        found = sorted(Path(got).rglob("*.onnx"))
        if not found:
            raise MedclfError(
                f"{ref} (version {version}): its ONNX file could not be downloaded (none came "
                "back); the files may have been deleted from the artifact store: register the "
                "run again"
            )
        if found[0] != tmp / records.FP32_FILE:
            shutil.move(found[0], tmp / records.FP32_FILE)
