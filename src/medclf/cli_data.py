"""``medclf data check|cache|stats``: the data half of the pipeline, on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medclf.cli_common import DATA_PATH_HELP, OVERRIDES_HELP, handles_errors

data_app = typer.Typer(
    rich_markup_mode=None,
    help="Inspect, check and cache a dataset (same data.* options as train).",
    no_args_is_help=True,
)


def _data_config(path: str, overrides: list[str] | None) -> Any:
    from medclf.config import compose

    items = list(overrides or [])
    if path.startswith("kaggle:"):
        items.append(f"data.source={path}")
    else:
        items.append(f"data.path={path}")
    return compose(items)


@data_app.command("check")
@handles_errors
def data_check(
    path: str = typer.Argument(..., help=DATA_PATH_HELP),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when leakage or label conflicts are found."
    ),
    out: Path = typer.Option(None, "--out", help="Where to write check.json."),
) -> None:
    """Counts, formats, unreadable files, duplicates, near-duplicates, leakage, imbalance."""
    from medclf.atomic import sweep_stale, write_json
    from medclf.data.check import print_check
    from medclf.data.prepare import prepare_data

    cfg = _data_config(path, overrides)
    prepared = prepare_data(cfg.data)
    target = out or Path(cfg.runs_root) / "checks" / _dataset_slug(prepared.dataset) / "check.json"
    sweep_stale(target.parent, recursive=False)  # a report write killed mid-way
    write_json(target, prepared.report)
    print_check(prepared.report)
    typer.echo(f"report: {target}")
    if strict and not prepared.report["passed"]:
        typer.echo("error: data check failed (--strict): leakage or label conflicts", err=True)
        raise typer.Exit(1)


def _dataset_slug(dataset: str) -> str:
    parts = [p for p in Path(dataset).parts if p not in ("/", ".", "..")]
    name = "-".join(parts[-2:]) if parts else "dataset"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@data_app.command("cache")
@handles_errors
def data_cache(
    path: str = typer.Argument(..., help=DATA_PATH_HELP),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Decode every image once into the memory-mapped cache that train will reuse."""
    import time

    from medclf.data.prepare import prepare_data, provisional_preprocessing
    from medclf.models.architectures import resolve_input_config

    cfg = _data_config(path, overrides)
    resolve_input_config(cfg)
    prepared = prepare_data(cfg.data)
    start = time.perf_counter()
    cache, built = prepared.build_cache(
        cfg.data.cache_dir, provisional_preprocessing(cfg.data, prepared.table)
    )
    size_mb = cache.images_path.stat().st_size / 1e6
    verb = f"built in {time.perf_counter() - start:.1f} s" if built else "already up to date"
    typer.echo(
        f"cache {verb}: {cache.root} ({cache.shape[0]} images, {cache.dtype.name} "
        f"{'x'.join(map(str, cache.shape[1:]))}, {size_mb:.1f} MB)"
    )


@data_app.command("stats")
@handles_errors
def data_stats(
    path: str = typer.Argument(..., help=DATA_PATH_HELP),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    save: Path = typer.Option(None, "--save", help="Write the statistics to this JSON file."),
    verify: Path = typer.Option(
        None, "--verify", help="Recompute and compare with a saved JSON file; exit 1 if different."
    ),
    display: bool = typer.Option(True, "--display/--quiet", help="Print the statistics."),
) -> None:
    """Normalization statistics of the training split, after the model's resize and window."""
    from medclf.data.stats import compare_stats, compute_stats, load_stats, save_stats
    from medclf.models.architectures import resolve_input_config

    cfg = _data_config(path, overrides)
    resolve_input_config(cfg)
    stats = compute_stats(cfg.data)
    if display:
        from medclf.atomic import dumps_json

        typer.echo(dumps_json(stats))
    if save:
        save_stats(save, stats)
        typer.echo(f"saved: {save}")
    if verify:
        problems = compare_stats(load_stats(verify), stats)
        if problems:
            for line in problems:
                typer.echo(f"mismatch: {line}", err=True)
            typer.echo(f"error: statistics differ from {verify}", err=True)
            raise typer.Exit(1)
        typer.echo(f"verified: statistics match {verify}")
