"""``medclf init-pipeline``: a DVC pipeline (check -> train -> evaluate -> export) users adopt.

The settings go to ``params.yaml`` (nested, as DVC reads params) and each stage's command
reads them back through DVC's ``${key}`` templating, so editing ``params.yaml`` and running
``dvc repro`` reruns exactly the stages whose settings or inputs changed. The run folder has
a fixed path (``run_group=pipeline``, ``run_name=model``), and every stage declares as outputs
only the files it writes there (DVC refuses overlapping outputs, and a stage that changed an
earlier stage's output would make the next ``dvc repro`` retrain): train the run's inputs,
weights and curves; evaluate the decision record, the test evaluation, the card and the
monitoring reference; export the export folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medclf.errors import MedclfError

RUN_GROUP, RUN_NAME = "pipeline", "model"
RUN = f"runs/{RUN_GROUP}/{RUN_NAME}"
CHECK_REPORT = f"runs/{RUN_GROUP}/data_check.json"
# logs/ is left out: it exists only with a logger (logger: '[]' has none), and nothing
# downstream reads it
TRAIN_OUTS = (
    "config.yaml", "split.csv", "preprocessing.json", "data_check.json", "weights",
    "metrics.csv", "train_summary.json", "training_curves.png",
)  # fmt: skip
EVALUATE_OUTS = ("calibration.json", "eval/test", "model_card.md", "monitor_reference.json")
# the pipeline names these itself; a word setting them would move the run folder
FIXED_KEYS = ("run_group", "run_name", "runs_root")
UNSAFE = set('"$`\\\n')  # a value the stage commands could not quote


def _params(words: list[Any]) -> dict[str, Any]:
    """Nested ``params.yaml`` content: scalars as typed, lists and mappings as their text
    (DVC substitutes scalars into a command; the text is what the medclf word needs)."""
    params: dict[str, Any] = {}
    for word in words:
        *parents, leaf = word.key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        scalar = word.value is None or isinstance(word.value, str | int | float | bool)
        node[leaf] = word.value if scalar else word.text
    return params


def _read(words: list[str]) -> list[Any]:
    from medclf.config import compose
    from medclf.words import read_all

    read = read_all(words)
    for word in read:
        if word.delete or word.sweep or word.item.startswith("+"):
            raise MedclfError(f"{word.item}: init-pipeline takes plain KEY=VALUE settings")
        if word.key in FIXED_KEYS:
            raise MedclfError(
                f"{word.item}: the pipeline's run folder is fixed ({RUN}); leave out {word.key}"
            )
        if UNSAFE & set(word.text):
            raise MedclfError(f"{word.item}: quotes, $, backslashes and newlines cannot be used")
    if "data.path" not in {w.key for w in read}:
        raise MedclfError("missing data.path=...; usage: medclf init-pipeline data.path=DATA")
    compose(words)  # every value checked by the schema before a file is written
    return read


def _stage(
    head: list[str], read: list[Any], keep: Any, tail: list[str], deps: list[str], outs: list
) -> dict[str, Any]:
    """One stage: ``head``, then each setting ``keep`` selects as a quoted ``KEY=${KEY}``
    word (DVC substitutes params.yaml's value), then ``tail``; those settings are the
    stage's params, so changing one reruns it."""
    mine = [w.key for w in read if keep(w.key)]
    stage: dict[str, Any] = {
        "cmd": " ".join([*head, *(f'"{k}=${{{k}}}"' for k in mine), *tail]),
        "deps": deps,
    }
    if mine:
        stage["params"] = mine
    stage["outs"] = outs
    return stage


def pipeline(words: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dvc.yaml, params.yaml) for the medclf settings ``words``."""
    read = _read(words)

    def training(key: str) -> bool:
        return not key.startswith(("eval.", "export.", "serve.", "monitor."))

    stages = {
        "check": _stage(
            ["medclf data check", '"${data.path}"'],
            read,
            lambda k: k.startswith("data."),  # data.path too: the same value, tracked
            ["--strict", "--out", CHECK_REPORT],
            ["${data.path}"],
            [{CHECK_REPORT: {"cache": False}}],
        ),
        "train": _stage(
            ["medclf train"],
            read,
            training,
            [f"run_group={RUN_GROUP}", f"run_name={RUN_NAME}"],
            ["${data.path}", CHECK_REPORT],
            [f"{RUN}/{name}" for name in TRAIN_OUTS],
        ),
        "evaluate": _stage(
            ["medclf evaluate", f"model={RUN}"],
            read,
            lambda k: k.startswith("eval."),
            [],
            ["${data.path}", *(f"{RUN}/{n}" for n in ("weights", "config.yaml", "split.csv"))],
            [f"{RUN}/{name}" for name in EVALUATE_OUTS],
        ),
        "export": _stage(
            ["medclf export", f"model={RUN}"],
            read,
            lambda k: k.startswith("export."),
            [],
            [f"{RUN}/{n}" for n in ("weights", "calibration.json", "eval/test")],
            [f"{RUN}/export"],
        ),
    }
    return {"stages": stages, "metrics": [f"{RUN}/eval/test/metrics.json"]}, _params(read)


HEADER = {
    "dvc.yaml": (
        "# medclf pipeline (medclf init-pipeline): check -> train -> evaluate -> export.\n"
        "# Settings are in params.yaml; `dvc repro` reruns the stages whose settings or inputs\n"
        "# changed; `dvc metrics show` prints the test metrics.\n"
    ),
    "params.yaml": (
        "# medclf settings of the pipeline in dvc.yaml (any key of `medclf config show`;\n"
        "# lists and mappings are written as medclf words read them, e.g. logger: '[]').\n"
    ),
}


def write_pipeline(folder: Path, words: list[str], force: bool = False) -> list[Path]:
    """``folder/dvc.yaml`` and ``folder/params.yaml``; existing ones only with ``force``."""
    from medclf.atomic import write_text

    dvc_yaml, params = pipeline(words)
    targets = [folder / "dvc.yaml", folder / "params.yaml"]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise MedclfError(f"{existing[0]} exists; pass --force to replace it")
    for path, content in zip(targets, (dvc_yaml, params), strict=True):
        text = yaml.safe_dump(content, sort_keys=False, default_flow_style=False, width=1000)
        write_text(path, HEADER[path.name] + text)
    return targets
