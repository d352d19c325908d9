"""Validation of a composed config against ``medclf.schema``, with one line per refusal.

pydantic does the checking; this module turns its first error into the line a user reads
(``eval.ci_method=bcaa is not valid: expected one of bca, percentile, basic. Did you mean
bca?``) and answers "what does this key accept?" for ``medclf config show --keys``. It runs when
a config is composed, so a bad value is refused before any file is read or written.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from medclf.errors import MedclfError
from medclf.schema import SECTIONS, Config, Section, Timm, model_schema
from medclf.schema_kinds import Expect

__all__ = ["allowed_values", "check_values", "schema_leaves"]


def check_values(cfg: DictConfig, sections: Sequence[str] | None = None) -> None:
    """Raise MedclfError naming the first key whose value the schema refuses.

    With ``sections`` (e.g. ``["eval", "data"]`` for the settings an evaluation merges from a
    run folder), only those sections are checked, and only the keys they hold: a run written
    by an older medclf may lack a newer key or keep a retired one."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError:  # a run's sections without the top-level runs_root
        plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    if sections is None:
        _validate(Config, plain, "")
        model = plain["model"]
        _validate_model(model)
        from medclf.metric_names import best_epoch_metric

        best_epoch_metric(str(cfg.train.monitor), str(cfg.train.monitor_mode))
        return
    for name in sections:
        if name in plain:
            _validate(SECTIONS[name], plain[name], f"{name}.", partial=True)


def _validate_model(model: dict[str, Any]) -> None:
    name = str(model.get("name"))
    schema = model_schema(name)
    if schema is not Timm and model.get("weights") is not None:
        raise MedclfError(
            f"{name} has no pretrained weights: model.weights is for timm architectures "
            "(e.g. model=resnet18 model.weights=FILE)"
        )
    try:
        schema.model_validate(model)
    except ValidationError as exc:
        if any(e["type"] == "missing" for e in exc.errors()):
            family = "custom_cnn" if schema.__name__ == "CustomCnn" else "a timm architecture"
            raise MedclfError(
                f"model.name={name} is {family}, but the model settings are another family's: "
                f"choose it with model={name} instead of model.name={name}"
            ) from None
        raise MedclfError(_message(exc.errors()[0], schema, "model.")) from None


def _validate(schema: type[Section], data: Any, prefix: str, partial: bool = False) -> None:
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if partial:  # a run folder's section: absent or retired keys are not the user's error
            errors = [e for e in errors if e["type"] not in ("missing", "extra_forbidden")]
        if errors:
            raise MedclfError(_message(errors[0], schema, prefix)) from None


# --- from a pydantic error to one line ---------------------------------------------------------
def _inner_models(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class inside ``annotation`` (through Optional, list, dict values) and whether
    the next location step is a dict key."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        inner, _ = _inner_models(args[1])
        return inner, inner is not None
    for arg in args:
        inner, keyed = _inner_models(arg)
        if inner is not None:
            return inner, keyed
    return None, False


def _resolve(
    schema: type[BaseModel], loc: Sequence[Any]
) -> tuple[str, FieldInfo | None, type[BaseModel] | None]:
    """The dotted key a pydantic location names, the field declared there and the section it
    opens (union-branch tags such as ``literal['a','b']`` in the location are skipped)."""
    parts: list[str] = []
    current: type[BaseModel] | None = schema
    field: FieldInfo | None = None
    keyed = False
    for step in loc:
        if isinstance(step, int):
            parts[-1] += f"[{step + 1}]"  # stages are counted from 1 in messages
        elif keyed:
            parts.append(str(step))
            keyed = False
        elif current is not None and step in current.model_fields:
            parts.append(str(step))
            field = current.model_fields[step]
            current, keyed = _inner_models(field.annotation)
    return ".".join(parts), field, current


def _expect(field: FieldInfo | None) -> Expect | None:
    if field is None:
        return None
    found = [m for m in field.metadata if isinstance(m, Expect)]
    stack = [field.annotation]
    while stack and not found:
        node = stack.pop()
        found = [m for m in getattr(node, "__metadata__", ()) if isinstance(m, Expect)]
        stack += typing.get_args(node)
    return found[0] if found else None


def _nullable(field: FieldInfo | None) -> bool:
    return field is not None and type(None) in typing.get_args(field.annotation)


def _plain_type(field: FieldInfo | None) -> str:
    annotation = field.annotation if field is not None else None
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return {bool: "true or false", str: "text"}.get(annotation, "")  # type: ignore[arg-type]


def _message(error: Any, schema: type[BaseModel], prefix: str) -> str:
    if error["type"] == "extra_forbidden":
        parent, _, section = _resolve(schema, error["loc"][:-1])
        parent = (prefix + parent).rstrip(".")
        name = str(error["loc"][-1])
        siblings = list(section.model_fields) if section is not None else []
        near = difflib.get_close_matches(name, siblings, n=1)
        hint = f" Did you mean '{parent}.{near[0]}'?" if near else ""
        return (
            f"unknown config key '{parent}.{name}'.{hint} "
            "Run 'medclf config show --keys' to list every key."
        )
    key, field, _ = _resolve(schema, error["loc"])
    key = prefix + key
    if error["type"] == "missing":
        return f"{key} is missing: set it, or run 'medclf config show --keys'"
    value = error.get("input")
    shown = "null" if value is None else value
    expect = _expect(field)
    expected = expect.text if expect else _plain_type(field)
    near = difflib.get_close_matches(str(value), expect.options, n=1, cutoff=0.5) if expect else []
    reason = f"expected {expected}" if expected else error["msg"][:1].lower() + error["msg"][1:]
    return (
        f"{key}={shown} is not valid: {reason}"
        + (" (or null)" if _nullable(field) else "")
        + (f". Did you mean {near[0]}?" if near else "")
    )


@functools.cache
def schema_leaves(model_name: str) -> dict[str, tuple[Expect | None, bool]]:
    """Every leaf key the schema declares, with what it accepts and whether null is allowed;
    ``model.*`` keys are those of ``model_name``'s family. Lists and mappings of sections
    (``train.stages``, ``eval.gates``) are leaves: their items are not fixed keys."""
    found: dict[str, tuple[Expect | None, bool]] = {}

    def walk(schema: type[BaseModel], prefix: str) -> None:
        for name, field in schema.model_fields.items():
            inner = field.annotation if name != "model" else model_schema(model_name)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                walk(inner, f"{prefix}{name}.")
            else:
                found[prefix + name] = (_expect(field), _nullable(field))

    walk(Config, "")
    return found


def allowed_values(key: str, model_name: str) -> str | None:
    """What ``key`` accepts, as ``medclf config show --keys`` prints it (None when the schema
    says no more than its type)."""
    expect, nullable = schema_leaves(model_name).get(key, (None, False))
    if expect is None:
        return None
    return expect.text + (" or null" if nullable else "")
