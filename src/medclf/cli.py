"""medclf command line. Heavy libraries are imported inside commands, so --help is instant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from medclf.artifacts import local_model, local_run
from medclf.cli_audit import audit_app
from medclf.cli_common import (
    OVERRIDES_HELP,
    artifact,
    handles_errors,
    only_section,
    require,
    state,
)
from medclf.cli_data import data_app
from medclf.cli_monitor import monitor
from medclf.cli_pipeline import init_pipeline
from medclf.cli_registry import register, registry_app, registry_settings
from medclf.cli_tune import tune
from medclf.errors import MedclfError

app = typer.Typer(
    rich_markup_mode=None,
    name="medclf",
    help="Medical image classification: data -> train -> evaluate -> export -> serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    rich_markup_mode=None, help="Inspect the packaged configuration.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")
app.command(name="monitor")(monitor)
app.command(name="init-pipeline")(init_pipeline)
app.command(name="tune")(tune)
app.command("register")(register)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state["debug"] = debug
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@config_app.command("show")
@handles_errors
def config_show(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    keys: bool = typer.Option(
        False, "--keys", help="Every key with its value, allowed values and one line of help."
    ),
) -> None:
    """Print the resolved configuration (with overrides applied)."""
    from omegaconf import OmegaConf

    from medclf.config import compose

    cfg = compose(overrides or [])
    if keys:
        from medclf.config_help import describe

        typer.echo("\n".join(describe(cfg)))
        return
    typer.echo(OmegaConf.to_yaml(cfg), nl=False)


@app.command()
@handles_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder for the dataset."),
    per_class: int = typer.Option(150, "--per-class", help="Images per class."),
    size: int = typer.Option(128, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same files."),
) -> None:
    """Write a synthetic chest-CT phantom dataset (4 classes, 16-bit PNG + manifest.csv)."""
    from medclf.data.synth import generate

    manifest = generate(out, per_class=per_class, size=size, seed=seed)
    typer.echo(
        f"wrote {len(manifest)} images of {manifest['patient_id'].nunique()} patients "
        f"({', '.join(sorted(manifest['label'].unique()))}) to {out}"
    )


@app.command()
@handles_errors
def train(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the recipe and the resolved config; train nothing."
    ),
    multirun: bool = typer.Option(
        False,
        "--multirun",
        "-m",
        help="One run per combination of comma-separated values (model=a,b train.lr=x,y), "
        "each evaluated, then one comparison.",
    ),
    metric: str = typer.Option(
        "macro_auc", "--metric", help="With -m: rank the runs by this test metric."
    ),
) -> None:
    """Train a model; prints the run folder and the best epoch's metrics.

    With recipe=auto (the default) the architecture, input handling, epochs for
    train.time_budget and the rest are chosen from the data for every key not given here.
    resume=RUN continues an interrupted run from its last checkpoint, exactly.
    cv=K trains K patient-grouped folds of the train and val images and makes their
    ensemble, a run folder that evaluate, export, predict and serve take like one model.
    """
    from omegaconf import OmegaConf

    from medclf.config import compose_for_training
    from medclf.training import ddp
    from medclf.words import keys as override_keys
    from medclf.words import split_words

    joining = ddp.joining_folder()
    if joining is not None:  # a DDP rank Lightning started: rank 0's run, whatever the words
        from medclf.training.run import join

        join(joining)
        return
    if multirun:
        _multirun(list(overrides or []), dry_run, metric)
        return
    found, rest, _ = split_words(overrides, {"resume"})
    if "resume" in found:
        from medclf.api import Run
        from medclf.training.run import resume

        resumed = resume(require(found, "resume", "medclf train resume=RUN"), rest)
        result = Run(resumed.run.root, resumed.best_metrics)
    else:
        # Compose (and so refuse a bad key or value) before the seconds of torch imports.
        cfg = compose_for_training(rest)
        if dry_run:
            from medclf.training.run import plan_recipe

            line = plan_recipe(cfg, override_keys(rest))
            typer.echo(OmegaConf.to_yaml(cfg, resolve=True), nl=False)
            typer.echo(line or "recipe: none (the packaged defaults and the command line)")
            return
        if int(cfg.cv):
            _cross_validate(cfg, override_keys(rest))
            return
        from medclf.api import train_words

        result = train_words(rest, cfg)  # what medclf.train() runs
    if ddp.rank() != 0:  # rank 0 reports (torchrun, srun)
        return
    typer.echo(f"run: {result.root}")
    from medclf.formatting import metrics_line

    typer.echo("best epoch: " + metrics_line(result.best_metrics))


def _cross_validate(cfg, keep: tuple[str, ...]) -> None:
    """``medclf train cv=K``: the folds' runs, their validation mean and spread, and the
    ensemble folder (``medclf.training.cv``)."""
    from medclf.formatting import metrics_line
    from medclf.training.cv import summary_lines, train_cv

    result = train_cv(cfg, keep)
    for fold in result.folds:
        typer.echo(f"{fold.run.name}: {metrics_line(fold.best_metrics)}")
    folds = len(result.folds)
    typer.echo(f"cv ({folds} folds, mean +/- sd): " + "; ".join(summary_lines(result.summary)))
    typer.echo(f"run: {result.run.root}")
    typer.echo(
        "  the fold ensemble: evaluate, export, predict and serve take it like one model; "
        "'medclf evaluate' fits its calibration on the out-of-fold predictions"
    )


@app.command()
@handles_errors
def evaluate(
    args: list[str] = typer.Argument(
        None,
        help="model=RUN|models:/NAME@ALIAS [split=test] [data.path=OTHER] [backend=torch|onnx] "
        "[eval.KEY=VALUE ...] [mlflow.tracking_uri=URI]",
    ),
    fail_on_gate: bool = typer.Option(
        False, "--fail-on-gate", help="Exit with status 1 when a quality gate fails."
    ),
) -> None:
    """Clinical evaluation of a run's best checkpoint: metrics with 95% CIs, calibration,
    operating thresholds, quality gates, figures, report.html and model_card.md. A registered
    version (models:/...) is evaluated as deployed: its ONNX file with its embedded decision."""
    from medclf.api import evaluate_words
    from medclf.evaluation.summary import print_summary
    from medclf.words import split_words

    found, rest, _ = split_words(args, {"model", "run", "split", "backend"})
    spec = artifact(found, "medclf evaluate model=RUN [split=test | data.path=OTHER]")
    report = evaluate_words(spec, found.get("split"), found.get("backend"), rest)
    print_summary(report)
    if fail_on_gate and not report.gates.passed:
        raise typer.Exit(1)


def _multirun(overrides: list[str], dry_run: bool, metric: str) -> None:
    """``medclf train -m``: every combination composed (checked) first, then trained and
    evaluated one after another, then compared (``medclf.multirun``)."""
    from medclf.config import compose_for_training
    from medclf.metric_names import resolve_metric
    from medclf.multirun import combinations, run_all, swept
    from medclf.training.ddp import launched_together

    if any(w.startswith("resume=") for w in overrides):
        raise MedclfError("resume=RUN continues one run; it does not combine with -m")
    if launched_together():
        raise MedclfError(
            "-m trains several runs: launch it with train.devices=N (Lightning starts the "
            "other ranks for each run), not under torchrun or srun"
        )
    resolve_metric(metric)  # an unknown metric name is refused before any training
    runs = combinations(overrides)
    configs = [compose_for_training(words) for words in runs]
    for i, words in enumerate(swept(runs), 1):
        typer.echo(f"run {i}/{len(runs)}: {' '.join(words) or '(no sweep)'}")
    if dry_run:
        return
    result = run_all(runs, configs, metric)
    for entry in result.runs:
        status = f"failed: {entry['error']}" if entry.get("error") else entry["run"]
        typer.echo(f"{' '.join(entry['swept']) or '(no sweep)'}: {status}")
    if result.comparison is not None:
        typer.echo(f"comparison: {result.comparison.html}")
    typer.echo(f"multirun: {result.folder / 'multirun.json'}")
    if result.failed:
        raise typer.Exit(1)


@app.command()
@handles_errors
def compare(
    runs: list[str] = typer.Argument(
        None,
        help="RUN folders evaluated with 'medclf evaluate', or registered versions "
        "(models:/NAME@ALIAS, models:/NAME/VERSION) [mlflow.tracking_uri=URI]",
    ),
    metric: str = typer.Option("macro_auc", "--metric", help="Rank by this metric (or alias)."),
    split: str = typer.Option("test", "--split", help="Which evaluation of each run."),
    out: Path = typer.Option(Path(), "--out", help="Folder for compare.csv and .html."),
) -> None:
    """Rank evaluated runs: metrics with CIs, calibration, gates, latency, size."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from medclf.evaluation.compare import compare_runs

    # registry words (mlflow.tracking_uri=, runs_root=) for the models:/ among the runs
    words = [r for r in runs or [] if "=" in r and not r.startswith("models:/")]
    if words:
        registry_settings(words)  # anything else is refused here
    folders = [local_run(r, words)[0] for r in runs or [] if r not in words]
    result = compare_runs(folders, metric=metric, split=split, out=out)
    table = Table(show_header=True, header_style="bold")
    shown = [c for c in result.table.columns if c not in ("path", "gates_passed")]
    for c in shown:
        table.add_column(c, overflow="fold")
    for row in result.table.to_dict("records"):
        table.add_row(*("" if pd.isna(row[c]) else str(row[c]) for c in shown))
    Console(width=220).print(table)
    typer.echo(f"table: {result.csv}")
    typer.echo(f"report: {result.html}")


@app.command()
@handles_errors
def export(
    args: list[str] = typer.Argument(
        None, help="model=RUN [format=onnx] [quantize=int8] [export.KEY=VALUE ...]"
    ),
) -> None:
    """Export the best checkpoint to ONNX and verify it against PyTorch on test images; with
    quantize=int8 also an INT8 file, kept only if its test accuracy and AUC hold."""
    from medclf.api import export_run
    from medclf.formatting import number
    from medclf.words import split_words

    found, rest, _ = split_words(args, {"model", "run", "format", "quantize"})
    only_section(rest, "export", "export")
    target = artifact(found, "medclf export model=RUN format=onnx")
    result = export_run(target, found.get("format", "onnx"), found.get("quantize"), rest).result
    p = result.parity
    typer.echo(f"exported: {result.onnx_path}")
    typer.echo(
        f"parity on {p['images']} images: max |dp| = {p['max_abs_diff']:.2e} "
        f"(limit {p['tolerance']:.0e}), top-1 agreement {number(p['top1_agreement'])}"
    )
    if result.int8:
        q = result.int8
        auc = q["macro_auc_delta"]
        typer.echo(
            f"exported: {result.onnx_path.with_name('model.int8.onnx')} (INT8 on {q['images']} "
            f"test images: accuracy {number(q['int8']['accuracy'])} vs "
            f"{number(q['fp32']['accuracy'])}, macro AUC delta "
            f"{'n/a' if auc is None else f'{auc:+.3f}'}, top-1 agreement "
            f"{number(q['top1_agreement'])}, size x{q['size_ratio']:.2f}, "
            f"batch-1 latency x{q['batch1_latency_ratio']:.2f})"
        )


@app.command()
@handles_errors
def predict(
    args: list[str] = typer.Argument(
        None, help="model=RUN|FILE.onnx|models:/NAME@ALIAS PATH... [mlflow.tracking_uri=URI]"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Classify image files or folders with a run or an exported ONNX model."""
    from medclf.api import Model
    from medclf.inference.predictor import load_predictor
    from medclf.words import split_words

    found, rest, items = split_words(args, {"model"}, plain=True)
    usage = "medclf predict model=RUN|FILE.onnx|models:/NAME@ALIAS PATH..."
    spec = require(found, "model", usage)
    if not items:
        raise MedclfError(f"no images given; usage: {usage}")
    model = Model(load_predictor(*local_model(spec, rest, "predict")))
    results = model.predict_records(items)  # what medclf.load(...).predict() reads
    if as_json:
        from medclf.atomic import dumps_json

        typer.echo(dumps_json({"model": model.info, "results": results}))
    else:
        _print_predictions(results, model.classes)
    for r in results:
        for warning in r.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
    failed = [r for r in results if "error" in r]
    if failed:
        raise MedclfError(
            f"{len(failed)} of {len(results)} images could not be read "
            f"(first: {failed[0]['error']})"
        )


def _print_predictions(results: list[dict[str, Any]], classes: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("image", overflow="fold")
    table.add_column("class")
    table.add_column("confidence", justify="right")
    table.add_column("decision")
    sets = any("prediction_set" in r.get("decision", {}) for r in results)
    if sets:
        table.add_column("conformal set")
    for c in classes:
        table.add_column(f"p({c})", justify="right")
    for r in results:
        if "error" in r:
            blank = [""] * (len(classes) + 2 + sets)
            table.add_row(r["path"], "[red]error[/red]", *blank)
            continue
        probs = r["probabilities"]
        decision = r["decision"]
        in_set = decision.get("prediction_set")
        set_text = [] if not sets else [_set_text(in_set, decision.get("set_coverage"))]
        table.add_row(
            r["path"],
            r["prediction"]["class"],
            f"{r['prediction']['confidence']:.4f}",
            decision["label"] or "refer (no class over its threshold)",
            *set_text,
            *(f"{probs[c]:.4f}" for c in classes),
        )
    Console(width=max(120, 40 + 14 * len(classes))).print(table)


def _set_text(members: list[str] | None, coverage: float | None) -> str:
    if not members:
        return ""
    text = "{" + ", ".join(members) + "}"
    return text + (" refer" if len(members) > 1 else "") + f" ({coverage:.0%})"


@app.command()
@handles_errors
def serve(
    args: list[str] = typer.Argument(
        None,
        help="model=RUN|FILE.onnx|models:/NAME@ALIAS [host=127.0.0.1] [port=8000] "
        "[serve.KEY=VALUE ...] [mlflow.tracking_uri=URI]",
    ),
) -> None:
    """Serve a model over HTTP: POST /predict, /predict/batch; GET /health, /ready,
    /metadata, /metrics (see 'medclf config show' for the serve.* settings)."""
    from medclf.config import compose
    from medclf.serving.settings import ServeSettings
    from medclf.words import split_words

    found, rest, _ = split_words(args, {"model", "host", "port"})
    spec = require(found, "model", "medclf serve model=RUN|FILE.onnx [host=..] [port=..]")
    own = [f"serve.{k}={found[k]}" for k in ("host", "port") if k in found]
    serve_words = [w for w in rest if w.startswith("serve.")]
    # checked by the schema before the model is loaded or a port is opened
    settings = ServeSettings.from_cfg(compose([*own, *serve_words]))
    rest = [w for w in rest if w not in serve_words]
    _serve(spec, rest, settings)


def _shown(url: str | None) -> str:
    """A database URL without its password."""
    if not url:
        return "off"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _serve(spec: str, rest: list[str], settings: Any) -> None:
    import uvicorn

    from medclf.inference.predictor import load_predictor
    from medclf.serving.app import create_app

    path, registered = local_model(spec, rest, "serve")
    predictor = load_predictor(path, registered, threads=settings.threads)  # checked here
    # The event loop and HTTP parser are named, not "auto": uvicorn would pick uvloop and
    # httptools wherever some other package installed them (Evidently does), and the service
    # would then differ from the slim image's, where the tests and benchmarks measured it.
    bind = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "loop": "asyncio",
        "http": "h11",
    }
    if settings.workers == 1:
        app = create_app(predictor, settings)  # opens the audit log: a bad URL is one line
        typer.echo(_startup_line(predictor, settings, spec, registered))
        uvicorn.run(app, **bind)
        return
    if settings.audit_url:  # each worker opens its own: checked here first, the same way
        from medclf.serving.audit import open_engine

        open_engine(settings.audit_url).dispose()
    typer.echo(_startup_line(predictor, settings, spec, registered))
    del predictor  # each worker loads its own
    _serve_workers(path, registered, settings, bind)


def _startup_line(predictor: Any, settings: Any, spec: str, registered: Any) -> str:
    """One line: what is served, where, within which limits."""
    url = f"http://{settings.host}:{settings.port}"
    origin = f", registered {spec} = version {registered['version']}" if registered else ""
    return (
        f"serving {predictor.name} (version {predictor.version}, {predictor.backend}{origin}) "
        f"on {url} ({settings.workers} worker(s)); uploads up to {settings.max_upload_mb:g} "
        f"MiB, {settings.max_files} files per batch request, {settings.max_concurrent_uploads} "
        f"at once; batches of up to {settings.max_batch} within {settings.max_wait_ms:g} ms; "
        f"API key {'required' if settings.api_key else 'off'}; audit log "
        f"{_shown(settings.audit_url)} - try: curl -F file=@scan.png {url}/predict"
    )


def _serve_workers(path: str, registered: Any, settings: Any, bind: dict[str, Any]) -> None:
    """``serve.workers`` processes (uvicorn's supervisor), each loading the model checked
    above; their metrics are added up in a private folder that is removed afterwards."""
    import json
    import shutil
    import tempfile

    import uvicorn

    from medclf.serving.app import WORKER_ENV
    from medclf.serving.telemetry import MULTIPROC_ENV

    metrics_dir = tempfile.mkdtemp(prefix="medclf-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[WORKER_ENV] = json.dumps(
        {"model": path, "registered": registered, "settings": settings.to_json()}
    )
    try:
        uvicorn.run(
            "medclf.serving.app:from_environment",
            factory=True,
            workers=settings.workers,
            **bind,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
@handles_errors
def demo(overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP)) -> None:
    """Synthetic CT -> train -> evaluate -> export -> predict, in a few minutes on a CPU."""
    from medclf.demo import run_demo

    run_demo(overrides or [])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
