"""How ``medclf registry show`` prints model versions: one line each, with its aliases, test
metrics and intervals, gates and where it came from (read from the version's tags)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medclf.errors import MedclfError
from medclf.inference.release import HEADLINE
from medclf.registry.names import TAG_GATES_FAILED, TAG_GATES_PASSED


def _gates(tags: dict[str, str]) -> str:
    passed = tags.get(TAG_GATES_PASSED, "not evaluated")
    if passed == "true":
        return "gates passed"
    if passed == "false":
        return f"gates FAILED ({tags.get(TAG_GATES_FAILED, '')})"
    return "not evaluated"


def _aliases_by_version(aliases: dict[str, Any]) -> dict[str, list[str]]:
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def version_lines(versions: Iterable[Any], aliases: dict[str, Any]) -> list[str]:
    by_version = _aliases_by_version(aliases)
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


def compare_rows(versions: Iterable[Any], aliases: dict[str, Any], metric: str) -> list[dict]:
    """Versions side by side, best ``metric`` (a headline test metric) first; versions never
    evaluated last."""
    if metric not in HEADLINE:
        raise MedclfError(f"--metric {metric}: a version's tags hold {', '.join(HEADLINE)}")
    by_version = _aliases_by_version(aliases)
    rows = []
    for v in versions:
        tags = dict(v.tags)
        row = {
            "version": str(v.version),
            "aliases": ", ".join(sorted(by_version.get(str(v.version), []))),
        }
        for m in HEADLINE:
            row[m] = (
                f"{tags[f'test.{m}']} ({tags.get(f'test.{m}.ci', '')})"
                if f"test.{m}" in tags
                else "n/a"
            )
        row["gates"] = _gates(tags)
        row["weights"] = tags.get("medclf.model_version", "?")
        score = tags.get(f"test.{metric}", "n/a")
        row["_sort"] = float(score) if score not in ("n/a", "") else float("-inf")
        rows.append(row)
    rows.sort(key=lambda r: r["_sort"], reverse=True)
    return [
        {"rank": i, **{k: v for k, v in r.items() if k != "_sort"}} for i, r in enumerate(rows, 1)
    ]
