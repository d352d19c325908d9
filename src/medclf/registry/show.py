"""How ``medclf registry show`` prints model versions: one line each, with its aliases, test
metrics and intervals, gates and where it came from (read from the version's tags)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medclf.export.release import HEADLINE
from medclf.registry.names import TAG_GATES_FAILED, TAG_GATES_PASSED


def _gates(tags: dict[str, str]) -> str:
    passed = tags.get(TAG_GATES_PASSED, "not evaluated")
    if passed == "true":
        return "gates passed"
    if passed == "false":
        return f"gates FAILED ({tags.get(TAG_GATES_FAILED, '')})"
    return "not evaluated"


def version_lines(versions: Iterable[Any], aliases: dict[str, Any]) -> list[str]:
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    lines = []
    for v in versions:
        tags = dict(v.tags)
        named = by_version.get(str(v.version))
        metrics = ", ".join(
            f"{m} {tags[f'test.{m}']} ({tags.get(f'test.{m}.ci', '')})"
            for m in HEADLINE
            if f"test.{m}" in tags
        )
        lines.append(
            f"{v.name}/{v.version}"
            + (f" [{', '.join(sorted(named))}]" if named else "")
            + ": "
            + "; ".join(p for p in (metrics, _gates(tags)) if p)
        )
        forced = {k: val for k, val in tags.items() if k.startswith("medclf.forced.")}
        if forced:
            lines.append("    forced: " + ", ".join(f"{k[14:]}={val}" for k, val in forced.items()))
        weights, run = tags.get("medclf.model_version", "?"), tags.get("medclf.run_dir", "?")
        lines.append(f"    weights {weights}, run {run}")
    return lines
