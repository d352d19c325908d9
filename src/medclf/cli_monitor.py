"""``medclf monitor``: new images against the model's reference profile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from medclf.cli_common import handles_errors, require
from medclf.errors import MedclfError

USAGE = (
    "medclf monitor model=RUN|FILE.onnx|models:/NAME@ALIAS images=FOLDER | audit=URL "
    "[since=7d] [window=1d] [labels=CSV] [out=DIR]"
)
EXIT_ALERT = 1  # a threshold was crossed (2 stays "bad input"): for cron and CI alerting


@handles_errors
def monitor(
    args: list[str] = typer.Argument(
        None,
        help="model=... images=FOLDER | audit=URL [since=7d] [window=1d] [labels=CSV] [out=DIR] "
        "[monitor.KEY=VALUE ...] [runs_root=DIR]",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Compare new images (a folder) or live traffic (the service's audit log) with the
    model's reference profile (written by its test evaluation): input drift, prediction
    drift and a label-free accuracy estimate, over time windows for the audit log; writes
    monitor.json and report.html and exits 1 when a monitor.* threshold is crossed."""
    from medclf.artifacts import local_model
    from medclf.config import compose
    from medclf.inference.predictor import load_predictor
    from medclf.monitoring.evidently_report import wanted
    from medclf.monitoring.monitor import compare, reference_of
    from medclf.monitoring.report import write_outputs
    from medclf.schema_kinds import parse_duration
    from medclf.words import keys, split_words

    found, rest, _ = split_words(
        args or [], {"model", "images", "audit", "since", "window", "labels", "out"}
    )
    own = [w for w, k in zip(rest, keys(rest), strict=True) if k.startswith("monitor.")]
    own += [w for w, k in zip(rest, keys(rest), strict=True) if k == "runs_root"]
    cfg = compose(own)  # checked before any file is read
    spec = require(found, "model", USAGE)
    if ("images" in found) == ("audit" in found):
        raise MedclfError(f"give images=FOLDER or audit=URL (one per run); usage: {USAGE}")
    evidently = wanted(str(cfg.monitor.evidently))
    window = found.get("window", "1d" if "audit" in found else None)
    window_s = parse_duration(window, key="window") if window else None
    paths = _image_paths(found["images"], cfg.monitor) if "images" in found else []
    predictor = load_predictor(*local_model(spec, [w for w in rest if w not in own], "monitor"))
    reference = reference_of(predictor)  # refused before any image or row is read
    current = _current(predictor, found, paths, cfg.monitor, progress)
    result = compare(reference, current, cfg.monitor, window_s)
    if "labels" in found:
        _add_labels(result, Path(found["labels"]), predictor, current, cfg.monitor)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(found.get("out") or Path(cfg.runs_root) / "monitor" / predictor.name / stamp)
    write_outputs(out, predictor.info(), result, reference, current, evidently)
    _print(result, out)
    if result["alerts"]:
        raise typer.Exit(EXIT_ALERT)


def _image_paths(folder: str, settings: Any) -> list[Path]:
    from medclf.data.discover import image_files

    paths = image_files([folder])
    if len(paths) > int(settings.max_images):
        raise MedclfError(
            f"{folder}: {len(paths)} images, more than monitor.max_images="
            f"{settings.max_images}; monitor a smaller folder or raise the limit"
        )
    return paths


def _current(predictor: Any, found: dict, paths: list[Path], settings: Any, progress: bool):
    """The new images through the model, or the audit log's predictions of this model."""
    from medclf.monitoring.monitor import current_from_audit, read_current
    from medclf.serving.audit import read_rows, since_time

    if paths:
        root = Path(found["images"]).expanduser()
        return read_current(predictor, paths, progress, root if root.is_dir() else None)
    since = since_time(found.get("since"))
    rows = read_rows(found["audit"], since, predictor.version, int(settings.max_images))
    return current_from_audit(rows, predictor.class_names)


def _add_labels(result: dict, path: Path, predictor: Any, current: Any, settings: Any) -> None:
    """Realised metrics of the labelled images, and an alert when their accuracy's upper
    bound falls more than ``max_accuracy_drop`` below the release's test accuracy."""
    from medclf.monitoring.labels import read_labels, realised

    key, labels = read_labels(path, predictor.class_names, int(settings.max_images))
    if key not in current.ids:
        raise MedclfError(
            f"labels={path}: its '{key}' column names audit rows; a folder's images are named "
            "by path (relative to images=) or sha256"
        )
    done = realised(
        current.probabilities, current.ids[key], labels, predictor.class_names,
        result["performance_estimate"]["accuracy"], predictor.release, float(settings.confidence),
    )  # fmt: skip
    result["labels"] = done
    tested = (done["release_test_accuracy"] or {}).get("value")
    if tested is not None and done["accuracy"]["high"] < tested - float(settings.max_accuracy_drop):
        result["alerts"].append("performance: the realised accuracy is below the release's")


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
    inputs = ", ".join(f"{n} (PSI {drift[n]['psi']:.2f})" for n in shifted) or "none"
    embedded = result["embedding_drift"]
    embedding = f"p={embedded['p_value']:.3f}" if embedded else "not recorded"
    typer.echo(
        f"input drift: {inputs if drift else 'no features recorded'}; embedding MMD "
        f"{embedding}; class-share PSI {pred['class_psi']:.2f}"
    )
    if est.get("valid", True):
        typer.echo(
            f"label-free accuracy {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] "
            f"(expected on {est['reference']['sample']}: {expected['value']:.3f})"
        )
    else:
        typer.echo(f"label-free accuracy: NOT VALID here, {est['invalid_reason']}")
    if "labels" in result:
        real = result["labels"]["accuracy"]
        typer.echo(
            f"realised accuracy on {result['labels']['images']} labelled image(s) "
            f"{real['value']:.3f} [{real['low']:.3f}, {real['high']:.3f}]; the label-free "
            f"estimate {'held' if result['labels']['estimate_held'] else 'did not hold'}"
        )
    if result["too_few_images"]:
        typer.echo(f"fewer than {result['settings']['min_images']} images: no alert raised")
    for alert in result["alerts"]:
        typer.echo(f"alert: {alert}")
    typer.echo(f"report: {out / 'report.html'}")
    for name, verdict in result.get("evidently", {}).items():
        typer.echo(f"evidently ({name}): {out / verdict['file']}")
