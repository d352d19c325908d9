"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` as a local release folder.

A version is downloaded once into ``<runs_root>/registry-cache/NAME/VERSION-RUNID/`` (keyed by
the version and the MLflow run that holds it, so a registry that was reset never serves a stale
copy), laid out like the run it came from without its weights: ``export/model.onnx`` (the
registered file, verified on every load like any export: the graph digest embedded at export
and the file sha256 in ``export/metadata.json``), and the run files ``register`` logged beside
it (``config.yaml``, ``preprocessing.json``, ``split.csv``, ``eval/test/``...). ``predict`` and
``serve`` use the ONNX file; ``evaluate`` and ``compare`` use the folder as a run. An alias is
resolved at each call: moving ``production`` changes what the next command gets.

Registry artifacts come from other people: their sizes are read from the artifact listing and
bounded before anything is downloaded.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medclf import tracking
from medclf.atomic import atomic_dir, write_json
from medclf.errors import MedclfError
from medclf.inference import records
from medclf.registry import aliases
from medclf.registry.names import ModelRef, parse_ref
from medclf.rundir import RunDir

CACHE = "registry-cache"
RUN_ARTIFACTS = "run"  # the artifact folder register logs the run's files under
REGISTERED_FILE = "registered.json"  # in the cache folder: which version it holds
MAX_RUN_FILES_BYTES = 512 * 2**20  # config, split.csv, reports: megabytes, even for big data


@dataclass(frozen=True)
class Fetched:
    ref: ModelRef
    version: str
    folder: Path  # laid out like a run folder, without weights

    @property
    def onnx(self) -> Path:
        return RunDir(self.folder).export_dir / records.FP32_FILE

    @property
    def has_run_files(self) -> bool:
        """Whether the version carries its run's files (config, split, evaluation); a version
        registered by an earlier medclf holds only the model."""
        return RunDir(self.folder).config.is_file()

    def registered(self) -> dict[str, Any]:
        """Which registered version this is, for ``/health``, ``predict --json`` and reports."""
        found = {"name": self.ref.name, "version": self.version}
        return {**found, "alias": self.ref.alias} if self.ref.alias else found


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
    fetched = Fetched(ref, str(version.version), folder)
    if not (folder / REGISTERED_FILE).is_file():  # written last: the folder is complete
        _download(client, fetched, version.run_id, uri)
    return fetched


def _fail(ref: ModelRef, version: str, what: str) -> MedclfError:
    return MedclfError(
        f"{ref} (version {version}): {what}; the files may have been deleted from the artifact "
        "store: register the run again"
    )


def _download(client: Any, fetched: Fetched, run_id: str, uri: str) -> None:
    import mlflow
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    ref, version = fetched.ref, fetched.version
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # models:/ is resolved by the registry
    with atomic_dir(fetched.folder) as tmp:
        try:
            run_files = _listed_bytes(client, run_id, RUN_ARTIFACTS)
            if run_files > MAX_RUN_FILES_BYTES:
                raise _fail(ref, version, f"its run files hold {run_files / 2**20:.0f} MiB")
            got = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{ref.name}/{version}",
                    dst_path=str(tmp / "model"),
                    tracking_uri=uri,
                )
            )
            if run_files:
                mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=RUN_ARTIFACTS,
                    dst_path=str(tmp / "files"),
                    tracking_uri=uri,
                )
        except (MlflowException, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise _fail(ref, version, f"its artifacts could not be downloaded ({first})") from None
        _lay_out(fetched, tmp, got)


def _listed_bytes(client: Any, run_id: str, path: str) -> int:
    """Total size of the files under ``path`` in a run's artifacts, from the listing."""
    total = 0
    for item in client.list_artifacts(run_id, path):
        total += _listed_bytes(client, run_id, item.path) if item.is_dir else item.file_size or 0
    return total


def _lay_out(fetched: Fetched, tmp: Path, model_dir: Path) -> None:
    """The downloaded files in the run layout; ``registered.json`` last."""
    found = sorted(model_dir.rglob("*.onnx"))
    if not found:
        raise _fail(fetched.ref, fetched.version, "its ONNX file could not be downloaded")
    if found[0].stat().st_size >= records.MAX_ONNX_BYTES:
        raise _fail(fetched.ref, fetched.version, "its ONNX file is larger than 2 GiB")
    files = tmp / "files" / RUN_ARTIFACTS
    if files.is_dir():
        for item in files.iterdir():
            shutil.move(item, tmp / item.name)
    export = RunDir(tmp).export_dir
    export.mkdir(exist_ok=True)
    shutil.move(found[0], export / records.FP32_FILE)
    shutil.rmtree(tmp / "model", ignore_errors=True)
    shutil.rmtree(tmp / "files", ignore_errors=True)
    write_json(tmp / REGISTERED_FILE, {"name": fetched.ref.name, "version": fetched.version})


def registered_of(folder: str | Path) -> dict[str, Any] | None:
    """The ``registered.json`` of a cache folder (None for any other folder)."""
    path = Path(folder) / REGISTERED_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
