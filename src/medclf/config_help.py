"""One line of help for every config key: ``medclf config show --keys``.

The packaged YAML files are the documentation of their keys: each key carries a comment on its
line or in the lines just above it. PyYAML and OmegaConf drop comments when they load a file,
so the comments are read here from the text (a line-based walk over ``key:`` lines and their
indentation, which is all these files use); a key's allowed values come from the schema that
refuses bad values at compose (``medclf.schema``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from medclf.config import CONF_MODULE
from medclf.config_checks import allowed_values

_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_]\w*):(.*)$")
# group files whose comments describe a group's keys, looked at first (the others fill gaps)
_PREFERRED = ("default.yaml",)
HELP_WIDTH = 110


def _comments(text: str, prefix: str) -> dict[str, str]:
    """Dotted key -> its comment (the trailing one, else the lines just above it)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = _KEY_LINE.match(line)
        if not match or match.group(2) == "defaults":
            above = []
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*([prefix] if prefix else []), *(k for _, k in stack), key])
        trailing = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        if trailing or above:
            found.setdefault(path, trailing or " ".join(above))
        stack.append((indent, key))
        above = []
    return found


def key_help(model_file: str = "timm.yaml") -> dict[str, str]:
    """Every documented key of the packaged config, with its comment; ``model_file`` is the
    model group's file whose comments come first (the chosen architecture's)."""
    root = resources.files(CONF_MODULE)
    found = _comments((root / "config.yaml").read_text(), "")
    for group in ("data", "model", "train", "eval", "export", "serve", "monitor"):
        files = sorted(
            (p for p in (root / group).iterdir() if p.name.endswith(".yaml")),
            key=lambda p: (p.name not in (*_PREFERRED, model_file), p.name),
        )
        for path in files:
            for key, text in _comments(path.read_text(), group).items():
                found.setdefault(key, text)
    return found


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, DictConfig) and len(node):
        return [kv for k, v in node.items() for kv in _leaves(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), node)]


def _shown(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return "null" if value is None else str(value)


def _one_line(text: str) -> str:
    """The comment's first sentence, cut at a word to fit one terminal line."""
    first = text.split(". ", 1)[0]
    if len(first) <= HELP_WIDTH:
        return first if first == text or first.endswith(".") else first + "."
    return first[: HELP_WIDTH - 3].rsplit(" ", 1)[0] + "..."


def _nearest(helps: dict[str, str], key: str) -> str:
    """The key's own help, else its nearest documented parent's (``eval.gates.accuracy.min``
    is explained by ``eval.gates``)."""
    while key:
        if key in helps:
            return helps[key]
        key = key.rpartition(".")[0]
    return ""


@dataclass(frozen=True)
class KeyRow:
    """One leaf key of a composed config: its value there, what it accepts, its comment."""

    key: str
    value: str
    allowed: str
    help: str


def key_rows(cfg: DictConfig) -> list[KeyRow]:
    """Every leaf key of the composed ``cfg`` (a composed config, so a chosen model or preset
    shows its own keys), for ``config show --keys`` and the documentation's config reference."""
    from medclf.models.architectures import is_custom

    helps = key_help("custom_cnn.yaml" if is_custom(str(cfg.model.name)) else "timm.yaml")
    return [
        KeyRow(
            key, _shown(value), allowed_values(key, str(cfg.model.name)) or "", _nearest(helps, key)
        )
        for key, value in _leaves(cfg)
    ]


def describe(cfg: DictConfig) -> list[str]:
    """``key = value  [allowed values]`` and an indented one-line help, for every leaf key."""
    lines: list[str] = []
    for row in key_rows(cfg):
        allowed = f"  [{row.allowed}]" if row.allowed else ""
        lines.append(f"{row.key} = {row.value}{allowed}")
        if row.help:
            lines.append(f"    {_one_line(row.help)}")
    return lines
