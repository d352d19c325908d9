"""Gated aliases: ``production`` (or any alias) points at a version only when that version's
gates passed, unless forced with a reason that is recorded on the version. Every move is
appended to a history kept as a registered-model tag, which ``rollback`` walks back."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

from medclf.errors import MedclfError
from medclf.registry.names import TAG_GATES_FAILED, TAG_GATES_PASSED, TAG_HISTORY, check_alias


def check_promotion(
    gates: dict[str, Any] | None, alias: str, force: bool, reason: str | None, what: str
) -> None:
    """Refuse ``alias`` for a model whose gates failed or were never run, unless forced with a
    reason. ``gates`` is ``{"passed": bool, "failed": [...]}`` or None (no evaluation)."""
    if force:
        if not (reason or "").strip():
            raise MedclfError(
                f"--force needs reason=... (why alias={alias} is set despite the gates); it is "
                "recorded on the version"
            )
        return
    if gates is None:
        raise MedclfError(
            f"{what} has no test evaluation, so alias={alias} cannot be gated; run "
            "'medclf evaluate model=RUN' first (or --force reason=...)"
        )
    if not gates["passed"]:
        raise MedclfError(
            f"{what} failed its gates ({'; '.join(gates['failed'])}): alias={alias} not set. "
            "Improve the model, or --force reason=... to record why it goes anyway"
        )


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"


def _gates_of(version: Any) -> dict[str, Any] | None:
    passed = version.tags.get(TAG_GATES_PASSED)
    if passed not in ("true", "false"):
        return None
    failed = [g for g in version.tags.get(TAG_GATES_FAILED, "").split("; ") if g]
    return {"passed": passed == "true", "failed": failed}


def get_version(client: Any, name: str, version: int | str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise MedclfError(
            f"{name}/{version}: no such registered model version (see 'medclf registry show "
            f"{name}')"
        ) from None


def by_alias(client: Any, name: str, alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise MedclfError(
            f"{name}@{alias}: no such alias (see 'medclf registry show {name}')"
        ) from None


def history(client: Any, name: str, alias: str) -> list[str]:
    model = client.get_registered_model(name)
    return json.loads(model.tags.get(TAG_HISTORY + alias, "[]"))


def _move(client: Any, name: str, alias: str, version: str, trail: list[str]) -> None:
    client.set_registered_model_alias(name, alias, version)
    client.set_registered_model_tag(name, TAG_HISTORY + alias, json.dumps(trail))


def promote(
    client: Any,
    name: str,
    version: int | str,
    alias: str = "production",
    force: bool = False,
    reason: str | None = None,
) -> None:
    """Point ``alias`` at ``version`` when its gates passed (or forced, with the reason)."""
    check_alias(alias)
    found = get_version(client, name, version)
    check_promotion(_gates_of(found), alias, force, reason, f"{name}/{version}")
    if force:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        for key, value in (("by", _who()), ("reason", reason), ("at", stamp)):
            client.set_model_version_tag(name, str(version), f"medclf.forced.{alias}.{key}", value)
    trail = history(client, name, alias)
    if not trail or trail[-1] != str(version):
        trail.append(str(version))
    _move(client, name, alias, str(version), trail)


def rollback(client: Any, name: str, alias: str = "production") -> tuple[str, str]:
    """Move ``alias`` back to the version it pointed to before; returns (from, to)."""
    check_alias(alias)
    current = by_alias(client, name, alias).version
    trail = history(client, name, alias)
    while trail and trail[-1] != str(current):
        trail.pop()  # moves made outside medclf are not in the record
    if len(trail) < 2:
        raise MedclfError(
            f"{name}@{alias}: no earlier version recorded to roll back to (it has only pointed "
            f"at version {current})"
        )
    trail.pop()
    _move(client, name, alias, trail[-1], trail)
    return str(current), trail[-1]
