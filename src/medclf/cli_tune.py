"""``medclf tune``: an Optuna search over training settings (``medclf.tune``)."""

from __future__ import annotations

import typer

from medclf.cli_common import handles_errors
from medclf.errors import MedclfError

USAGE = (
    "medclf tune data.path=DATA [search=default|FILE.yaml] trials=N [study=NAME] "
    "[storage=FILE|URL] [time_budget=2h] [KEY=VALUE ...]"
)


@handles_errors
def tune(
    args: list[str] = typer.Argument(
        None,
        help="search=PRESET|FILE trials=N [study=NAME] [storage=FILE|URL] [time_budget=...] "
        "and any training KEY=VALUE",
    ),
) -> None:
    """Search training settings with Optuna (TPE, median pruning on the per-epoch
    validation objective). Each trial is a normal run folder; start the same command again,
    here or on another machine sharing storage=, to add workers to the study. Ends with the
    best trial and Optuna's history and importance plots in runs/tune/<study>/."""
    from medclf.config import compose
    from medclf.schema_kinds import parse_duration
    from medclf.training.ddp import distributed
    from medclf.tune import check_search, read_search, study_of, summarize, work
    from medclf.words import split_words

    own = {"search", "trials", "study", "storage", "time_budget"}
    found, base, _ = split_words(args or [], own)
    trials = _trials(found.get("trials"))
    search = read_search(found.get("search", "default"))
    cfg = compose(base)  # the words themselves, then every bound with them
    if distributed(cfg):
        raise MedclfError(
            "train.devices/num_nodes: tune trials train in one process each (the pruner stops "
            "a trial on one process); run more workers instead (the same command again)"
        )
    if int(cfg.cv):
        raise MedclfError(
            f"cv={cfg.cv}: a tune trial is one run scored on its validation split; tune "
            "without cv, then train the chosen settings with cv="
        )
    check_search(search, base)
    budget = found.get("time_budget")
    budget_s = parse_duration(budget, key="time_budget") if budget else None
    study = study_of(found, str(cfg.runs_root), search)
    typer.echo(f"study {study.name}: {trials} trial(s), storage {study.storage}")
    opened = work(study, search, base, trials, int(cfg.seed), budget_s)
    summary = summarize(study, opened)
    typer.echo(
        f"trials: {summary['complete']} complete, {summary['pruned']} pruned, "
        f"{summary['failed']} failed"
    )
    best = summary.get("best")
    if best is None:
        raise MedclfError(f"study {study.name}: no trial completed; see the log above")
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in best["params"].items())  # fmt: skip
    typer.echo(f"best: trial {best['trial']} ({best['value']:.4f}) {params}")
    typer.echo(f"run: {best['run']}")
    typer.echo(f"study folder: {study.folder}")


def _trials(text: str | None) -> int:
    if text is None:
        raise MedclfError(f"trials=N is required; usage: {USAGE}")
    try:
        trials = int(text)
    except ValueError:
        trials = 0
    if not 1 <= trials <= 10_000:
        raise MedclfError(f"trials={text}: give a whole number from 1 to 10000")
    return trials
