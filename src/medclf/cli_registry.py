"""``medclf register`` and ``medclf registry list|show|promote|rollback``.

The registry is the MLflow URI of the config (``mlflow.tracking_uri``, by default the sqlite
file under ``runs/``): any URI works, given as ``mlflow.tracking_uri=...`` on any of these
commands.
"""

from __future__ import annotations

from typing import Any

import typer

from medclf.artifacts import registry_settings
from medclf.cli_common import handles_errors, reject_extra, require
from medclf.errors import MedclfError

REGISTRY_WORDS = "[mlflow.tracking_uri=URI] [runs_root=DIR]"
registry_app = typer.Typer(
    rich_markup_mode=None,
    help="Registered model versions: list, show, promote and roll back (MLflow aliases).",
    no_args_is_help=True,
)


def _split(args: list[str] | None, own: set[str]) -> tuple[dict[str, str], dict, list, list]:
    """The command's own words, its tag.KEY=VALUE words, the settings and plain words."""
    from medclf.words import read_all, split_words

    found, rest, plain = split_words(args, own, plain=True)
    words = read_all(rest)
    tags = {w.key[4:]: w.text for w in words if w.key.startswith("tag.") and len(w.key) > 4}
    settings = [w.item for w in words if not (w.key.startswith("tag.") and len(w.key) > 4)]
    return found, tags, settings, plain


@handles_errors
def register(
    args: list[str] = typer.Argument(
        None,
        help="RUN name=NAME [alias=production] [description=TEXT] [tag.KEY=VALUE ...] "
        "[reason=TEXT] " + REGISTRY_WORDS,
    ),
    force: bool = typer.Option(
        False, "--force", help="Set the alias although the gates failed (needs reason=...)."
    ),
) -> None:
    """Register a run's exported ONNX model as a new version (alias only if its gates pass)."""
    from medclf.api import register_words

    found, tags, settings, plain = _split(
        args, {"model", "run", "name", "alias", "description", "reason"}
    )
    run = found.get("model") or found.get("run") or (plain[0] if plain else "")
    reject_extra(plain[1:], "register")
    usage = "medclf register RUN name=NAME"
    own = {"description": found.get("description"), "reason": found.get("reason")}
    done = register_words(
        require({"run": run}, "run", usage),
        require(found, "name", usage),
        found.get("alias"),
        {**own, "tags": tags, "force": force},
        settings,
    )
    where = f", alias {done.alias}" if done.alias else ""
    typer.echo(f"registered: {done.uri}{where} ({done.tracking_uri})")
    typer.echo(
        f"gates: {done.tags.get('medclf.gates.passed')}; test accuracy "
        f"{done.tags.get('test.accuracy', 'n/a')} ({done.tags.get('test.accuracy.ci', '')})"
    )


def _client(settings: list[str]) -> tuple[Any, str]:
    from medclf import tracking

    uri, _ = registry_settings(settings)
    return tracking.client(uri), uri


@registry_app.command("list")
@handles_errors
def registry_list(args: list[str] = typer.Argument(None, help=REGISTRY_WORDS)) -> None:
    """Every registered model: versions and aliases."""
    _, _, settings, plain = _split(args, set())
    reject_extra(plain, "registry list")
    client, uri = _client(settings)
    models = client.search_registered_models()
    if not models:
        typer.echo(f"no registered models in {uri}")
    for model in models:
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "no alias"
        typer.echo(f"{model.name}: {len(versions)} version(s); {aliases}")


@registry_app.command("show")
@handles_errors
def registry_show(
    args: list[str] = typer.Argument(None, help="NAME[@ALIAS|/VERSION] " + REGISTRY_WORDS),
) -> None:
    """Versions, aliases, test metrics with intervals and gates of one registered model."""
    from medclf.registry.fetch import resolve
    from medclf.registry.names import parse_ref
    from medclf.registry.show import version_lines

    _, _, settings, plain = _split(args, set())
    ref = parse_ref(require({"name": plain[0] if plain else ""}, "name", "registry show NAME"))
    reject_extra(plain[1:], "registry show")
    client, _ = _client(settings)
    if ref.alias or ref.version:
        chosen = [resolve(client, ref)]
    else:
        chosen = sorted(
            client.search_model_versions(f"name = '{ref.name}'"), key=lambda v: int(v.version)
        )
        if not chosen:
            raise MedclfError(f"{ref.name}: no such registered model (see 'medclf registry list')")
    aliases = client.get_registered_model(ref.name).aliases
    for line in version_lines(chosen, aliases):
        typer.echo(line)


@registry_app.command("promote")
@handles_errors
def registry_promote(
    args: list[str] = typer.Argument(
        None, help="NAME VERSION [alias=production] [reason=TEXT] " + REGISTRY_WORDS
    ),
    force: bool = typer.Option(
        False, "--force", help="Set the alias although the gates failed (needs reason=...)."
    ),
) -> None:
    """Point an alias (production by default) at a version whose gates passed."""
    from medclf.registry import aliases

    found, _, settings, plain = _split(args, {"alias", "reason"})
    if len(plain) != 2 or not plain[1].isdigit():
        raise MedclfError("usage: medclf registry promote NAME VERSION [alias=production]")
    reject_extra(plain[2:], "registry promote")
    client, _ = _client(settings)
    alias = found.get("alias", "production")
    aliases.promote(client, plain[0], plain[1], alias, force=force, reason=found.get("reason"))
    typer.echo(f"{plain[0]}@{alias} -> version {plain[1]}")


@registry_app.command("rollback")
@handles_errors
def registry_rollback(
    args: list[str] = typer.Argument(None, help="NAME [alias=production] " + REGISTRY_WORDS),
) -> None:
    """Move an alias back to the version it pointed to before."""
    from medclf.registry import aliases

    found, _, settings, plain = _split(args, {"alias"})
    name = require({"name": plain[0] if plain else ""}, "name", "registry rollback NAME")
    reject_extra(plain[1:], "registry rollback")
    client, _ = _client(settings)
    alias = found.get("alias", "production")
    before, after = aliases.rollback(client, name, alias)
    typer.echo(f"{name}@{alias}: version {before} -> version {after}")


@registry_app.command("compare")
@handles_errors
def registry_compare(
    args: list[str] = typer.Argument(None, help="NAME " + REGISTRY_WORDS),
    metric: str = typer.Option("macro_auc", "--metric", help="Rank by this test metric."),
) -> None:
    """A registered model's versions side by side, ranked by a test metric."""
    from rich.console import Console
    from rich.table import Table

    from medclf.registry.show import compare_rows

    _, _, settings, plain = _split(args, set())
    name = require({"name": plain[0] if plain else ""}, "name", "registry compare NAME")
    reject_extra(plain[1:], "registry compare")
    client, _ = _client(settings)
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise MedclfError(f"{name}: no such registered model (see 'medclf registry list')")
    rows = compare_rows(versions, client.get_registered_model(name).aliases, metric)
    table = Table(show_header=True, header_style="bold")
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console(width=200).print(table)
