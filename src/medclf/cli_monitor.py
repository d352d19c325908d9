"""``medclf monitor``: new images against the model's reference profile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from medclf.cli_common import expand_images, handles_errors, require
from medclf.errors import MedclfError

USAGE = "medclf monitor model=RUN|FILE.onnx|models:/NAME@ALIAS images=FOLDER [out=DIR]"
EXIT_ALERT = 1  # a threshold was crossed (2 stays "bad input"): for cron and CI alerting


@handles_errors
def monitor(
    args: list[str] = typer.Argument(
        None, help="model=... images=FOLDER [out=DIR] [monitor.KEY=VALUE ...] [runs_root=DIR]"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Compare new images with the model's reference profile (written by its test
    evaluation): input drift, prediction drift and a label-free accuracy estimate; writes
    monitor.json and report.html and exits 1 when a monitor.* threshold is crossed."""
    from medclf.cli_registry import local_model
    from medclf.config import compose
    from medclf.monitoring.monitor import compare, read_current, reference_of
    from medclf.monitoring.report import write_outputs
    from medclf.serving.predictor import load_predictor
    from medclf.words import keys, split_words

    found, rest, _ = split_words(args or [], {"model", "images", "out"})
    own = [w for w, k in zip(rest, keys(rest), strict=True) if k.startswith("monitor.")]
    own += [w for w, k in zip(rest, keys(rest), strict=True) if k == "runs_root"]
    cfg = compose(own)  # checked before any file is read
    settings = cfg.monitor
    spec, folder = require(found, "model", USAGE), require(found, "images", USAGE)
    paths = expand_images([folder])
    if len(paths) > int(settings.max_images):
        raise MedclfError(
            f"{folder}: {len(paths)} images, more than monitor.max_images="
            f"{settings.max_images}; monitor a smaller folder or raise the limit"
        )
    predictor = load_predictor(*local_model(spec, [w for w in rest if w not in own], "monitor"))
    reference = reference_of(predictor)  # refused before any image is decoded
    current = read_current(predictor, paths, progress)
    result = compare(reference, current, settings)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(found.get("out") or Path(cfg.runs_root) / "monitor" / predictor.name / stamp)
    write_outputs(out, predictor.info(), result, reference, current)
    _print(result, out)
    if result["alerts"]:
        raise typer.Exit(EXIT_ALERT)


def _print(result: dict[str, Any], out: Path) -> None:
    drift = result["input_drift"]
    shifted = [n for n, f in drift.items() if f["drift"]]
    pred = result["prediction_drift"]
    est = result["performance_estimate"]
    acc, expected = est["accuracy"], est["reference"]["accuracy"]
    typer.echo(
        f"monitored {result['images']} image(s) ({result['unreadable']} unreadable) against "
        f"{result['reference_images']} reference image(s)"
    )
    typer.echo(
        "input drift: "
        + (", ".join(f"{n} (PSI {drift[n]['psi']:.2f})" for n in shifted) or "none")
        + f"; class-share PSI {pred['class_psi']:.2f}"
    )
    typer.echo(
        f"label-free accuracy {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] "
        f"(expected on {est['reference']['sample']}: {expected['value']:.3f})"
    )
    if result["too_few_images"]:
        typer.echo(f"fewer than {result['settings']['min_images']} images: no alert raised")
    for alert in result["alerts"]:
        typer.echo(f"alert: {alert}")
    typer.echo(f"report: {out / 'report.html'}")
