"""``medclf train -m``: one training run per combination of swept values, each evaluated on
its test split, and one comparison of them all.

The sweep syntax is Hydra's own (``model=custom_cnn,resnet18``, ``train.lr=0.001,0.01``,
``data.image_size=range(128,257,64)``, lists as ``[8],[8,16]``), parsed by Hydra's override
parser; the combinations are the cartesian product, in the order given. Every combination
is composed (and so checked) before the first is trained. The runs train one after another
in this process (the machine's cores or GPU go to one training at a time); a failed
combination is reported and the others still run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclf.atomic import write_json
from medclf.errors import MedclfError

log = logging.getLogger("medclf")
MAX_RUNS = 64  # combinations refused beyond this before anything is trained


def combinations(overrides: list[str]) -> list[list[str]]:
    """The words of each run: swept words expanded, the others repeated."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise MedclfError(f"multirun: {str(exc).splitlines()[0]}") from None
    axes: list[list[str]] = []
    for item in parsed:
        key = item.get_key_element()
        if item.is_sweep_override():
            axes.append([f"{key}={value}" for value in item.sweep_string_iterator()])
        else:
            axes.append([item.input_line])
    count = 1
    for axis in axes:
        count *= len(axis)
    if count > MAX_RUNS:
        raise MedclfError(
            f"multirun: {count} combinations, more than {MAX_RUNS}; sweep fewer values "
            "(or use medclf tune for a search)"
        )
    return [list(words) for words in itertools.product(*axes)]


def swept(runs: list[list[str]]) -> list[list[str]]:
    """Per run, only the words that differ between runs (what names it in the summary)."""
    varying = {i for i in range(len(runs[0])) if len({r[i] for r in runs}) > 1}
    return [[w for i, w in enumerate(r) if i in varying] for r in runs]


@dataclass
class MultirunResult:
    folder: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    comparison: Any = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("error")]


def run_all(runs: list[list[str]], configs: list[Any], metric: str) -> MultirunResult:
    """Train and evaluate each configuration, then compare the evaluated runs."""
    from omegaconf import open_dict

    from medclf.evaluation.compare import compare_runs
    from medclf.evaluation.evaluate import evaluate
    from medclf.tracking import close_parent, open_parent
    from medclf.training.cv import train_cv
    from medclf.training.run import train
    from medclf.words import keys

    first = configs[0]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(str(first.runs_root)) / str(first.run_group) / f"multirun-{stamp}"
    result = MultirunResult(folder)
    names = swept(runs)
    parent = open_parent(first, folder.name, {"medclf.multirun": str(folder.resolve())})
    for i, (words, cfg) in enumerate(zip(runs, configs, strict=True)):
        entry: dict[str, Any] = {"words": words, "swept": names[i]}
        if parent and not cfg.mlflow.parent_run:  # each run a child of the sweep's
            with open_dict(cfg):
                cfg.mlflow.parent_run = parent
        log.info("multirun %d/%d: %s", i + 1, len(runs), " ".join(names[i]) or "(no sweep)")
        try:
            trained = (train_cv if int(cfg.cv) else train)(cfg, keys(words))
            entry["run"] = str(trained.run.root)
            evaluate(trained.run.root, progress=False)
        except MedclfError as exc:
            log.error("multirun %d/%d failed: %s", i + 1, len(runs), exc)
            entry["error"] = str(exc)
        result.runs.append(entry)
    close_parent(first, parent, failed=bool(result.failed))
    evaluated = [Path(r["run"]) for r in result.runs if "run" in r and not r.get("error")]
    folder.mkdir(parents=True, exist_ok=True)
    if evaluated:
        result.comparison = compare_runs(evaluated, metric=metric, split="test", out=folder)
    record = {"metric": metric, "mlflow_parent_run": parent, "runs": result.runs}
    write_json(folder / "multirun.json", record)
    return result
