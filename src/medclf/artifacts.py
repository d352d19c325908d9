"""What a ``model=`` word names: a run folder, an ONNX file, or a registered version
(``models:/NAME@ALIAS``, ``models:/NAME/VERSION``) fetched from the MLflow registry into the
local cache. The CLI and the Python API (``medclf.api``) resolve it here, the same way."""

from __future__ import annotations

import sys
from typing import Any

from medclf.errors import MedclfError


def registry_settings(rest: list[str]) -> tuple[str, str]:
    """(tracking URI, runs_root) from the packaged config and the command's mlflow.* and
    runs_root words; anything else is refused."""
    from medclf.config import compose
    from medclf.words import keys

    for item, key in zip(rest, keys(rest), strict=True):
        if not _registry_key(key):
            raise MedclfError(f"unknown argument '{item}' (see --help)")
    cfg = compose(rest)
    return str(cfg.mlflow.tracking_uri), str(cfg.runs_root)


def local_model(spec: str, rest: list[str], command: str) -> tuple[str, dict[str, Any] | None]:
    """A command's ``model=``: a run folder or ONNX file as given, or a registered version
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``) fetched into the local cache, with
    which version it is; the registry's own words (``mlflow.tracking_uri=``, ``runs_root=``)
    are read only then."""
    from medclf.registry.names import is_registry_ref

    if not is_registry_ref(spec):
        if rest:
            raise MedclfError(f"unknown argument '{rest[0]}' for 'medclf {command}' (see --help)")
        return spec, None
    fetched = _fetch(spec, rest)
    return str(fetched.onnx), fetched.registered()


def local_run(spec: str, rest: list[str]) -> tuple[str, list[str]]:
    """``evaluate`` and ``compare``: a run folder as given, or a registered version's release
    folder (its ONNX file and run files, fetched into the local cache); returns the folder and
    the words that are not the registry's."""
    from medclf.registry.names import is_registry_ref
    from medclf.words import keys

    if not is_registry_ref(spec):
        return spec, rest
    registry = [w for w, k in zip(rest, keys(rest), strict=True) if _registry_key(k)]
    fetched = _fetch(spec, registry)
    if not fetched.has_run_files:
        raise MedclfError(
            f"{spec}: version {fetched.version} holds only its ONNX file (registered by an "
            "earlier medclf), not its run's settings and split; register the run again"
        )
    return str(fetched.folder), [w for w in rest if w not in registry]


def _registry_key(key: str) -> bool:
    return key.startswith("mlflow.") or key == "runs_root"


def _fetch(spec: str, registry_words: list[str]):
    from medclf.registry.fetch import fetch

    uri, runs_root = registry_settings(registry_words)
    fetched = fetch(spec, uri, runs_root)
    print(f"{spec}: version {fetched.version} ({fetched.folder})", file=sys.stderr)
    return fetched
