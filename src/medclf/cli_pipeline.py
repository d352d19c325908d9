"""``medclf init-pipeline``: dvc.yaml and params.yaml for a reproducible pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from medclf.cli_common import handles_errors


@handles_errors
def init_pipeline(
    args: list[str] = typer.Argument(None, help="data.path=DATA [KEY=VALUE ...]"),
    folder: Path = typer.Option(Path(), "--dir", help="Where to write dvc.yaml and params.yaml."),
    force: bool = typer.Option(False, "--force", help="Replace existing files."),
) -> None:
    """Write a DVC pipeline (check -> train -> evaluate -> export) whose settings are the
    given medclf words, kept in params.yaml; then `dvc init` (once) and `dvc repro`."""
    from medclf.pipeline import RUN, write_pipeline

    written = write_pipeline(folder, list(args or []), force)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"next: dvc init (once; needs 'pip install medclf[dvc]'), dvc repro (the model lands "
        f"in {RUN}/), dvc push (with a remote: dvc remote add -d NAME URL)"
    )
