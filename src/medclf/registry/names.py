"""Registered model names, aliases and ``models:/`` references, checked before MLflow is asked
(so a name it would reject never leaves a half-registered version), and the tag keys."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medclf.errors import MedclfError

PREFIX = "models:/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
# MLflow's alias rule: word characters and '-', not 'latest', not a version-like 'v12'
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_VERSION_LIKE = re.compile(r"^v\d+$", re.IGNORECASE)

TAG_GATES_PASSED = "medclf.gates.passed"  # "true" | "false" | "not evaluated"
TAG_GATES_FAILED = "medclf.gates.failed"
TAG_HISTORY = "medclf.alias_history."  # + alias: JSON list of the versions it pointed to


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{PREFIX}{self.name}@{self.alias}"
        return f"{PREFIX}{self.name}" + (f"/{self.version}" if self.version else "")


def is_registry_ref(text: str) -> bool:
    return str(text).startswith(PREFIX)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise MedclfError(
            f"name={name}: a registered model name is letters, digits, '_', '-' and '.', starting "
            "with a letter or digit (200 characters at most), e.g. name=chest-ct-resnet18"
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias or "") or alias.lower() == "latest" or _VERSION_LIKE.match(alias):
        raise MedclfError(
            f"alias={alias}: an alias is letters, digits, '_' and '-', and neither 'latest' nor a "
            "version-like 'v3' (MLflow reserves them), e.g. alias=production"
        )
    return alias


def parse_ref(text: str) -> ModelRef:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME`` (the prefix is
    optional)."""
    body = str(text).removeprefix(PREFIX)
    if "@" in body:
        name, alias = body.split("@", 1)
        return ModelRef(check_name(name), alias=check_alias(alias))
    name, _, version = body.partition("/")
    if version and not version.isdigit():
        raise MedclfError(
            f"{text}: use models:/NAME/VERSION with a version number, or models:/NAME@ALIAS"
        )
    return ModelRef(check_name(name), version=int(version) if version else None)
