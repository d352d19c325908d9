"""``medclf tune``: a hyperparameter search with Optuna, shared by any number of workers.

search file -> (checked: every key and bound composes into a valid config) -> study (TPE,
median pruning, journal file or database) -> per trial: the config with the trial's values
-> a normal training run (``runs/tune-<study>/trial-NNNN``), reported to Optuna after each
validation epoch and stopped early when pruned -> the best trial, its run folder, and
Optuna's optimization-history and parameter-importance plots in the study folder.

Several processes (``medclf tune`` started again with the same study and storage, on this
machine or on others sharing the storage) work on one study: each asks Optuna for the next
trial number, which the storage hands out once, and a worker whose trial number lies past
``trials`` records it as surplus and stops, so a study ends with exactly ``trials`` trials
run whatever the race between workers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medclf.atomic import write_json
from medclf.errors import MedclfError

log = logging.getLogger("medclf.tune")
log.setLevel(logging.INFO)  # its trial lines stay while training's own info lines are quieted
SEARCH_DIR = Path(__file__).parent / "conf" / "search"
KINDS = ("float", "int", "categorical")
SURPLUS = "surplus"  # user attribute of a trial asked for after the study had its trials


@dataclass(frozen=True)
class Param:
    """One searched config key and how to draw its value."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))

    def bounds(self) -> list[Any]:
        """The values that must each make a valid config."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class Search:
    name: str
    params: tuple[Param, ...]
    objective: str | None


def override(key: str, value: Any) -> str:
    """``key=value`` as a command-line word (lists and null in Hydra's syntax)."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, list | tuple):
        return f"{key}=[{','.join(str(v) for v in value)}]"
    return f"{key}={value}"


def read_search(spec: str) -> Search:
    """A preset of ``conf/search/`` by name, or a YAML file."""
    path = Path(spec).expanduser()
    if not path.suffix:
        path = SEARCH_DIR / f"{spec}.yaml"
        if not path.is_file():
            presets = ", ".join(sorted(p.stem for p in SEARCH_DIR.glob("*.yaml")))
            raise MedclfError(f"search={spec}: no such preset ({presets}) and not a .yaml file")
    if not path.is_file():
        raise MedclfError(f"search={spec}: file not found")
    if path.stat().st_size > 1_000_000:
        raise MedclfError(f"search={spec}: larger than a search file can be (1 MB)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MedclfError(f"search={spec}: not readable YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or not data["params"]:
        raise MedclfError(f"search={spec}: expected a mapping 'params' of config keys")
    params = tuple(_param(spec, str(k), v) for k, v in data["params"].items())
    objective = data.get("objective")
    return Search(path.stem, params, None if objective is None else str(objective))


def _param(spec: str, key: str, entry: Any) -> Param:
    where = f"search={spec}: {key}"
    if not isinstance(entry, dict) or entry.get("type") not in KINDS:
        raise MedclfError(f"{where}: give type: {' | '.join(KINDS)}")
    kind = entry["type"]
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise MedclfError(f"{where}: a categorical parameter needs a list of choices")
        return Param(key, kind, choices=tuple(choices))
    low, high = entry.get("low"), entry.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not math.isfinite(low) or not math.isfinite(high) or low >= high:
        raise MedclfError(f"{where}: needs numbers low < high")
    log_scale = bool(entry.get("log", False))
    if log_scale and low <= 0:
        raise MedclfError(f"{where}: a log scale needs low > 0")
    step = entry.get("step")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise MedclfError(f"{where}: an int parameter needs whole-number bounds")
    return Param(key, kind, float(low), float(high), log_scale, int(step) if step else None)


def check_search(search: Search, base: list[str]) -> None:
    """Every bound of every parameter composes into a valid config with the other words:
    a bad key or value is refused now, not at trial 7."""
    from medclf.config import compose

    for param in search.params:
        for value in param.bounds():
            word = override(param.key, int(value) if param.kind == "int" else value)
            try:
                compose([*base, word])
            except MedclfError as exc:
                raise MedclfError(f"search={search.name}: {param.key}: {exc}") from None


@dataclass(frozen=True)
class Study:
    """Where a study lives: its name, its Optuna storage and its folder of results."""

    name: str
    storage: str  # a journal file path, or a database URL
    folder: Path

    def open(self, seed: int, direction: str, pruner: Any = None, *, epochs: int) -> Any:
        """The study (created, or joined when it exists); ``pruner`` defaults to the median
        rule: a trial stops when its epoch's objective is worse than the median of earlier
        trials at that epoch, from the third trial on and after the first quarter of a
        trial's ``epochs`` (at least the first epoch). Why a quarter: on chest_ct (24-epoch
        trials from scratch, warm-up and EMA) half the trials were pruned after their second
        epoch, one at a learning rate between the two best trials' rates."""
        import optuna

        if "://" in self.storage:
            storage: Any = optuna.storages.RDBStorage(self.storage)
        else:
            from optuna.storages.journal import JournalFileBackend

            Path(self.storage).parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(JournalFileBackend(self.storage))
        return optuna.create_study(
            study_name=self.name,
            storage=storage,
            load_if_exists=True,
            direction="minimize" if direction == "min" else "maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner
            or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 4)),
        )


def study_of(found: dict[str, str], runs_root: str, search: Search) -> Study:
    name = found.get("study") or search.name
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise MedclfError(f"study={name}: use letters, digits, '.', '_' and '-' only")
    folder = Path(runs_root) / "tune" / name
    return Study(name, found.get("storage") or str(folder / "journal.log"), folder)


def _pruning_callback(trial: Any, key: str) -> Any:
    """Reports ``key`` to Optuna after each validation epoch and stops training when Optuna
    prunes the trial (what optuna-integration's Lightning callback does; that package is not
    a dependency for one hook)."""
    from lightning.pytorch.callbacks import Callback

    class ReportAndPrune(Callback):
        pruned_at: int | None = None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            value = trainer.callback_metrics.get(key)
            if trainer.sanity_checking or value is None:
                return
            trial.report(float(value), step=trainer.current_epoch)
            if trial.should_prune():
                self.pruned_at = trainer.current_epoch
                trainer.should_stop = True

    return ReportAndPrune()


def _short(word: str) -> str:
    key, _, value = word.partition("=")
    try:
        return f"{key}={float(value):.4g}" if "." in value or "e" in value else word
    except ValueError:
        return word


@contextlib.contextmanager
def _quiet_training(first: bool) -> Iterator[None]:
    """Training's log (the data check and its warnings, the cache, the data summary: the
    same for every trial) only for a worker's first trial; later trials log errors, and
    the tune's own lines say how each ended."""
    trainer_log = logging.getLogger("medclf")
    level = trainer_log.level
    if not first:
        trainer_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        trainer_log.setLevel(level)


def run_trial(
    study: Study,
    trial: Any,
    search: Search,
    base: list[str],
    objective: str,
    parent: str | None = None,
    first: bool = True,
) -> float:
    """One trial: its config, a training run tagged with the study and trial, the value.
    ``first``: this worker's first trial, the one that logs what training logs."""
    import optuna

    from medclf.config import compose
    from medclf.metric_names import best_epoch_metric
    from medclf.training.run import train

    words = [override(p.key, p.suggest(trial)) for p in search.params]
    group = f"tune-{study.name}"
    name = f"trial-{trial.number:04d}"
    tracked = [f"mlflow.parent_run={parent}"] if parent else []
    cfg = compose([*base, *words, f"train.monitor={objective}", f"run_group={group}",
                   f"run_name={name}", *tracked])  # fmt: skip
    key, _ = best_epoch_metric(objective, "auto")
    callback = _pruning_callback(trial, key)
    log.info("trial %d: %s", trial.number, " ".join(_short(w) for w in words))
    with _quiet_training(first):
        result = train(cfg, extra_callbacks=(callback,))
    trial.set_user_attr("run", str(result.run.root))
    write_json(
        result.run.root / "trial.json",
        {"study": study.name, "storage": study.storage, "trial": trial.number,
         "params": trial.params, "objective": objective, "pruned_at": callback.pruned_at},
    )  # fmt: skip
    if callback.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned after epoch {callback.pruned_at}")
    value = result.best_metrics.get(key)
    if value is None or not math.isfinite(float(value)):
        raise MedclfError(f"trial {trial.number}: no finite {key} was logged")
    return float(value)


def work(
    study: Study,
    search: Search,
    base: list[str],
    trials: int,
    seed: int,
    budget_s: float | None,
    pruner: Any = None,
) -> Any:
    """Run trials of the study until it holds ``trials`` of them (with every other worker's)
    or ``budget_s`` seconds have passed; returns the Optuna study."""
    import optuna

    from medclf.config import compose
    from medclf.metric_names import best_epoch_metric
    from medclf.tracking import close_parent, open_parent

    group_cfg = compose([*base, f"run_group=tune-{study.name}"])  # where the trials log
    objective = search.objective or str(group_cfg.train.monitor)
    _, direction = best_epoch_metric(objective, "auto")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = study.open(seed, direction, pruner, epochs=int(group_cfg.train.max_epochs))
    parent = opened.user_attrs.get("mlflow_parent_run")  # made by the study's first worker
    if not parent:  # kept for the others: every worker's trials are children of one run
        parent = open_parent(group_cfg, f"study {study.name}", {"medclf.study": study.name})
        if parent:
            opened.set_user_attr("mlflow_parent_run", parent)
    started, first = time.monotonic(), True
    while budget_s is None or time.monotonic() - started < budget_s:
        if len(opened.get_trials(deepcopy=False)) - _surplus_before(opened, None) >= trials:
            break  # the study has its trials (the next ask would only make a surplus one)
        trial = opened.ask()
        # another worker may have asked since: the storage numbers trials once each
        if trial.number - _surplus_before(opened, trial.number) >= trials:
            trial.set_user_attr(SURPLUS, True)
            opened.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        # the trial's own seed: workers asking at once draw different values, and one
        # worker's study is reproducible trial by trial
        opened.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)
        run = functools.partial(run_trial, study, search=search, base=base,
                                objective=objective, parent=parent, first=first)  # fmt: skip
        _told(opened, trial, run)
        first = False
    close_parent(group_cfg, parent)
    return opened


def _told(opened: Any, trial: Any, fn: Any) -> None:
    import optuna

    try:
        value = fn(trial)
    except optuna.TrialPruned as exc:
        log.info("trial %d pruned (%s)", trial.number, exc)
        opened.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except MedclfError as exc:
        log.warning("trial %d failed: %s", trial.number, exc)
        trial.set_user_attr("error", str(exc)[:500])
        opened.tell(trial, state=optuna.trial.TrialState.FAIL)
    except BaseException:
        opened.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    else:
        log.info("trial %d: %.4f", trial.number, value)
        opened.tell(trial, value)


def _surplus_before(opened: Any, number: int | None) -> int:
    """Surplus trials (numbered below ``number``; all with None): they ran nothing and do
    not count towards ``trials``."""
    import optuna

    failed = opened.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    return sum(
        1 for t in failed if (number is None or t.number < number) and t.user_attrs.get(SURPLUS)
    )


def summarize(study: Study, opened: Any) -> dict[str, Any]:
    """best.json and the plots in the study folder; the summary printed by the command.

    Workers sharing a study each summarize when their own trials end. The trials are read
    again after the plots (the slow part), and a best.json that already counts more finished
    trials is kept: a worker that finished first must not overwrite the last one's complete
    summary with its older view (measured: 3 of 4 trials in best.json under load)."""
    import optuna

    study.folder.mkdir(parents=True, exist_ok=True)
    complete = opened.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    plots = _plots(opened, study.folder, len(complete))
    summary = {**_summary(study, opened), "plots": plots}
    if _finished(summary) >= _finished(_read_summary(study.folder / "best.json")):
        write_json(study.folder / "best.json", summary)
    return summary


def _summary(study: Study, opened: Any) -> dict[str, Any]:
    import optuna

    states = optuna.trial.TrialState
    done = opened.get_trials(deepcopy=False, states=(states.COMPLETE,))
    pruned = opened.get_trials(deepcopy=False, states=(states.PRUNED,))
    failed = [
        t for t in opened.get_trials(deepcopy=False, states=(states.FAIL,))
        if not t.user_attrs.get(SURPLUS)
    ]  # fmt: skip
    summary: dict[str, Any] = {
        "study": study.name,
        "storage": study.storage,
        "complete": len(done),
        "pruned": len(pruned),
        "failed": len(failed),
    }
    if done:
        best = opened.best_trial
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "run": best.user_attrs.get("run"),
        }
    return summary


def _finished(summary: dict[str, Any]) -> int:
    return sum(int(summary.get(k) or 0) for k in ("complete", "pruned", "failed"))


def _read_summary(path: Path) -> dict[str, Any]:
    """A best.json another worker wrote; {} when there is none (or it cannot be read)."""
    try:
        if path.stat().st_size > 2**20:
            return {}
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _plots(opened: Any, folder: Path, complete: int) -> list[str]:
    """Optuna's optimization history (and, with two or more complete trials, the parameter
    importances) as PNG files."""
    import warnings

    from optuna.visualization import matplotlib as ov

    from medclf.plotting import pyplot

    plt = pyplot()
    made = []
    wanted = [("history.png", ov.plot_optimization_history)]
    if complete >= 2:
        wanted.append(("importances.png", ov.plot_param_importances))
    for name, plot in wanted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                axes = plot(opened)
            except (ValueError, RuntimeError) as exc:  # e.g. one value for every trial
                log.info("%s not drawn: %s", name, exc)
                continue
        figure = axes.get_figure() if hasattr(axes, "get_figure") else plt.gcf()
        figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        made.append(str(folder / name))
    return made
