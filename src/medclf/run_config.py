"""A run folder's ``config.yaml``, read as a file from someone else.

Run folders are shared (a colleague's run, a registry download, a pipeline's output). Loaded
with ``OmegaConf.load``, ``model.name: ${oc.env:AWS_SECRET_ACCESS_KEY}`` would be resolved
from this machine's environment into the model card, and ``register`` would publish it; a
``!!python/object`` tag or a broken interpolation gave a traceback. So a run's config is read
strictly: bounded in size, plain YAML (``yaml.safe_load``: no tags), no ``${...}``
interpolation anywhere (medclf writes run configs resolved, so a genuine one has none), then
completed with the keys added since (``config.upgraded``) and checked against the schema
like a composed config: unknown keys and bad values are one ``error:`` line naming the file
and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from medclf.errors import MedclfError

MAX_BYTES = 1_000_000  # a resolved run config is a few KB


def _refuse_interpolation(node: Any, path: Path, key: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            name = f"{key}.{k}" if key else str(k)
            if "${" in str(k):
                raise MedclfError(f"{path}: key '{name}' holds an interpolation; refused")
            _refuse_interpolation(v, path, name)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_interpolation(v, path, f"{key}[{i}]")
    elif isinstance(node, str) and "${" in node:
        raise MedclfError(
            f"{path}: {key}={node!r} is an interpolation; a run's config holds plain values "
            "(medclf writes them resolved), so this file was edited: fix or remove the value"
        )


def load_run_config(path: str | Path) -> DictConfig:
    """The validated config of a run folder (see the module docstring)."""
    from medclf.config import upgraded
    from medclf.config_checks import check_values

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise MedclfError(f"{path}: {size} bytes; a run's config is at most {MAX_BYTES}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MedclfError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedclfError(
            f"{path}: not a plain YAML run config ({first}); tags such as !!python/object "
            "are refused"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise MedclfError(f"{path}: not a medclf run config (no model section)")
    _refuse_interpolation(data, path, "")
    cfg = upgraded(OmegaConf.create(data))
    try:
        check_values(cfg)
    except MedclfError as exc:
        raise MedclfError(f"{path}: {exc}") from None
    return cfg
