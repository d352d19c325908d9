"""``medclf audit export``: the service's audit log as CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from medclf.cli_common import handles_errors
from medclf.errors import MedclfError

audit_app = typer.Typer(
    rich_markup_mode=None, help="The prediction service's audit log.", no_args_is_help=True
)


@audit_app.command("export")
@handles_errors
def audit_export(
    args: list[str] = typer.Argument(None, help="[serve.audit_url=URL] [runs_root=DIR]"),
    since: str = typer.Option("", "--since", help="90m, 24h, 7d, or an ISO date or time."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    out: Path | None = typer.Option(None, "--out", help="File to write (audit.csv|.parquet)."),
) -> None:
    """Every answered prediction since a time, oldest first: request id, time, route, input
    sha256, model and version, probabilities, decision, latency, study pseudonym."""
    from medclf.config import compose
    from medclf.serving.audit import export, since_time
    from medclf.words import keys

    for item, key in zip(args or [], keys(args or []), strict=True):
        if key not in ("serve.audit_url", "runs_root"):
            raise MedclfError(f"unknown argument '{item}' (see --help)")
    if fmt not in ("csv", "parquet"):
        raise MedclfError(f"--format {fmt}: use csv or parquet")
    url = compose(list(args or [])).serve.audit_url
    if not url:
        raise MedclfError("serve.audit_url is null: name the audit log, serve.audit_url=URL")
    start = since_time(since)
    target = out or Path(f"audit.{fmt}")
    rows = export(str(url), target, fmt, start)
    typer.echo(f"exported {rows} prediction(s){f' since {start}' if start else ''} to {target}")
