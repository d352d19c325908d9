"""The Python API: the CLI's jobs as calls with typed results, for notebooks and scripts.

    import medclf
    run = medclf.train(data="chest_ct/Data", model="resnet18", **{"train.max_epochs": 30})
    report = run.evaluate(split="test")
    report.metrics["macro_auc"].value, report.metrics.to_frame(), report.gates.passed
    onnx = run.export(format="onnx", quantize="int8")
    preds = medclf.load("models:/chest@production").predict(["a.png", "b.dcm"])
    preds[0].label, preds[0].probabilities, preds[0].prediction_set

Every keyword is a config key, as on the command line (``data`` is ``data.path``; dotted keys
through ``**{...}``), composed and checked by the same schema before any file is read; a bad
one raises ``MedclfError`` with the message the CLI prints. ``medclf train``, ``evaluate``,
``export`` and ``predict`` call these same functions. Nothing heavy is imported until a call
needs it: ``import medclf`` stays light.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclf.errors import MedclfError

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+\-]*$")


def words(overrides: Mapping[str, Any]) -> list[str]:
    """Keyword arguments -> the ``key=value`` words the CLI takes (values in Hydra's
    grammar: true/false, null, [a,b], quoted text where it holds other characters)."""
    return [f"{key}={_value(value)}" for key, value in overrides.items()]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and text not in ("", "true", "false", "null"):
        return text
    # Hydra's quoted strings keep a backslash as it is, except a run of them right before a
    # quote (or before the closing one): those are halved. So a regex keeps its \d, and only
    # a quote and the backslashes before it (or at the end) are escaped.
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return "'" + text + "'"


@dataclass(frozen=True)
class Metric:
    """One measured value with its 95% interval (``low``/``high`` None where none was
    computed); ``cls`` names the class of a per-class value."""

    name: str
    value: float | None
    low: float | None = None
    high: float | None = None
    cls: str | None = None
    section: str = "overall"
    method: str | None = None  # how the interval was computed (BCa, percentile, ...)


class Metrics:
    """A report's metrics: ``metrics["accuracy"]``, ``metrics["sensitivity", "normal"]``,
    iteration over every ``Metric``, and ``to_frame()`` (one row each)."""

    def __init__(self, items: list[Metric]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: str | tuple[str, str]) -> Metric:
        name, cls = (key, None) if isinstance(key, str) else key
        for m in self._items:
            if m.name == name and m.cls == cls and m.section in ("overall", "per_class"):
                return m
        raise KeyError(f"no metric {key!r}; names: {sorted({m.name for m in self._items})}")

    def to_frame(self) -> Any:
        """A pandas DataFrame: section, metric, class, value, low, high, method."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "section": m.section,
                    "metric": m.name,
                    "class": m.cls,
                    "value": m.value,
                    "low": m.low,
                    "high": m.high,
                    "method": m.method,
                }
                for m in self._items
            ]
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Metrics:
        """From metrics.json's ``overall``, ``per_class`` and ``operating_point`` sections."""
        items = [_metric(k, v, None, "overall") for k, v in record.get("overall", {}).items()]
        for c, values in record.get("per_class", {}).items():
            items += [_metric(k, v, c, "per_class") for k, v in values.items()]
        operating = record.get("operating_point") or {}
        for c, values in (operating.get("per_class") or {}).items():
            items += [_metric(k, v, c, "operating_point") for k, v in values.items()]
        for k, v in operating.items():
            if k != "per_class" and isinstance(v, Mapping) and "value" in v:
                items.append(_metric(k, v, None, "operating_point"))
        return cls([m for m in items if m is not None])


def _metric(name: str, v: Any, cls: str | None, section: str) -> Metric | None:
    if not isinstance(v, Mapping) or "value" not in v:
        return None
    return Metric(
        name, v["value"], v.get("ci_low"), v.get("ci_high"), cls, section, v.get("ci_method")
    )


@dataclass(frozen=True)
class Gate:
    gate: str  # e.g. "accuracy >= 0.85"
    value: float | None
    passed: bool


@dataclass(frozen=True)
class Gates:
    """The quality gates ``eval.gates`` set, judged on this evaluation."""

    passed: bool
    gates: tuple[Gate, ...] = ()

    @property
    def failed(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if not g.passed)


@dataclass(frozen=True)
class Report:
    """One evaluation: where its files are (report.html, model_card.md, figures), its metrics
    with intervals and its gates; ``record`` is metrics.json as written."""

    folder: Path
    metrics: Metrics
    gates: Gates
    record: dict[str, Any] = field(repr=False)

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


@dataclass(frozen=True)
class Prediction:
    """One image through a model, as ``medclf predict`` and the service answer it: ``label``
    is the validated decision (the record's operating point; None when no class passes its
    threshold), ``top_class`` the most probable class, ``prediction_set`` the conformal set
    (None for a model without one), ``error`` why an image could not be read."""

    path: str
    label: str | None = None
    top_class: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    prediction_set: list[str] | None = None
    refer: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def from_record(cls, path: str, record: Mapping[str, Any]) -> Prediction:
        if "error" in record:
            return cls(path, error=str(record["error"]))
        decision = record.get("decision") or {}
        top = record.get("prediction") or {}
        return cls(
            path=path,
            label=decision.get("label"),
            top_class=top.get("class"),
            confidence=top.get("confidence"),
            probabilities=dict(record.get("probabilities") or {}),
            prediction_set=decision.get("prediction_set"),
            refer=bool(decision.get("refer", False)),
            warnings=list(record.get("warnings") or []),
        )


class Model:
    """A model ready to predict: a run folder, an ONNX file or a registered version."""

    def __init__(self, predictor: Any) -> None:
        self._predictor = predictor

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._predictor.class_names)

    @property
    def info(self) -> dict[str, Any]:
        """Name, version, backend, temperature, operating rule, conformal settings."""
        return self._predictor.info()

    def predict_records(self, images: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
        """Image files (folders: every image under them) -> one record each, as
        ``medclf predict --json`` prints them; an unreadable image gets its ``error``."""
        from medclf.data.discover import image_files

        items = [images] if isinstance(images, str | Path) else list(images)
        out = []
        for path in image_files([str(i) for i in items]):
            try:
                out.append({"path": str(path), **self._predictor.predict_one(path)})
            except MedclfError as exc:
                out.append({"path": str(path), "error": str(exc)})
        return out

    def predict(self, images: str | Path | Iterable[str | Path]) -> list[Prediction]:
        """Image files or folders -> one ``Prediction`` each, in order."""
        return [Prediction.from_record(r["path"], r) for r in self.predict_records(images)]


def load(spec: str | Path, **registry: Any) -> Model:
    """``spec``: a run folder, an ONNX file, or ``models:/NAME@ALIAS`` (``models:/NAME/N``),
    fetched from the registry that ``mlflow.tracking_uri`` names (a keyword, as
    ``**{"mlflow.tracking_uri": URI}``)."""
    from medclf.artifacts import local_model
    from medclf.inference.predictor import load_predictor

    return Model(load_predictor(*local_model(str(spec), words(registry), "predict")))


class Run:
    """A training run's folder: evaluate it, export it, load it to predict."""

    def __init__(self, root: str | Path, best_metrics: Mapping[str, float] | None = None) -> None:
        self.root = Path(root)
        self.best_metrics = dict(best_metrics or {})

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.root.name

    def evaluate(self, split: str | None = None, **overrides: Any) -> Report:
        """Clinical evaluation (``medclf evaluate``): metrics with 95% intervals, calibration,
        operating thresholds, gates, report.html and model_card.md under ``RUN/eval/SPLIT``.
        ``split``: None is the test split; ``data="OTHER"`` (``data.path``) evaluates an
        external labelled set instead (all of it, or its ``split``)."""
        return evaluate(self.root, split=split, **overrides)

    def export(self, format: str = "onnx", quantize: str | None = None, **overrides: Any) -> Path:
        """ONNX export verified against PyTorch (``medclf export``); the file's path. With
        ``quantize="int8"`` the INT8 file's path, when it kept its accuracy and AUC."""
        return export(self.root, format=format, quantize=quantize, **overrides)

    def register(self, name: str, alias: str | None = None, **options: Any) -> Registered:
        """Register this run's exported ONNX file as a new version of ``name`` (``medclf
        register``); ``alias`` (e.g. "production") is set only if its gates passed."""
        return register(self.root, name, alias=alias, **options)

    def load(self) -> Model:
        return load(self.root)

    def predict(self, images: str | Path | Iterable[str | Path]) -> list[Prediction]:
        return self.load().predict(images)


def _with_data(overrides: dict[str, Any], data: Any) -> dict[str, Any]:
    return {"data.path": data, **overrides} if data is not None else overrides


def train_words(items: list[str], cfg: Any = None) -> Run:
    """``medclf train KEY=VALUE ...`` (one run, or the fold ensemble of ``cv=K``); ``cfg``:
    the words already composed (the CLI composes first, to answer --dry-run)."""
    from medclf.config import compose_for_training
    from medclf.words import keys

    if cfg is None:  # refuses a bad key before the seconds of torch imports
        cfg = compose_for_training(items)
    if int(cfg.cv):
        from medclf.training.cv import train_cv

        result = train_cv(cfg, keys(items))
        return Run(result.run.root)
    from medclf.training.run import train as run_training

    result = run_training(cfg, keys(items))
    return Run(result.run.root, result.best_metrics)


def train(data: str | Path | None = None, model: str | None = None, **overrides: Any) -> Run:
    """Train a model (``medclf train``): ``data`` is the folder or manifest (``data.path``),
    ``model`` the architecture (any timm name; default: the recipe's choice); any other
    config key as a keyword. Returns the run."""
    given = _with_data(dict(overrides), data)
    if model is not None:
        given = {"model": model, **given}
    return train_words(words(given))


def evaluate(
    model: str | Path, split: str | None = None, backend: str | None = None, **overrides: Any
) -> Report:
    """``medclf evaluate model=...``: a run folder (``backend`` torch, or onnx for its
    exported file), or a registered version (evaluated as deployed, from its ONNX file)."""
    data = overrides.pop("data", None)
    return evaluate_words(str(model), split, backend, words(_with_data(overrides, data)))


def evaluate_words(spec: str, split: str | None, backend: str | None, rest: list[str]) -> Report:
    """The evaluation the CLI and ``evaluate()`` share (``rest``: the other words)."""
    from medclf.artifacts import local_run
    from medclf.evaluation.evaluate import evaluate as run_eval
    from medclf.registry.names import is_registry_ref

    if is_registry_ref(spec):  # a registered version holds its ONNX file: evaluated as deployed
        if backend not in (None, "onnx"):
            raise MedclfError(
                f"backend={backend}: {spec} holds its ONNX file, not its PyTorch weights; drop "
                "backend= or evaluate the run folder it came from"
            )
        backend = "onnx"
    target, rest = local_run(spec, rest)
    result = run_eval(target, split=split, overrides=rest, backend=backend or "torch")
    return report_of(result.out_dir, result.metrics, result.gates)


def report_of(folder: Path, metrics: Mapping[str, Any], gates: Mapping[str, Any]) -> Report:
    judged = tuple(
        Gate(str(g.get("gate")), g.get("value"), bool(g.get("passed")))
        for g in gates.get("gates", [])
    )
    record = dict(metrics)
    return Report(
        Path(folder), Metrics.from_record(record), Gates(bool(gates["passed"]), judged), record
    )


def export(
    model: str | Path, format: str = "onnx", quantize: str | None = None, **overrides: Any
) -> Path:
    """``medclf export model=RUN``; the exported file's path (the INT8 file's with
    ``quantize="int8"``, when it was kept)."""
    return export_run(str(model), format, quantize, words(overrides)).path


@dataclass(frozen=True)
class Registered:
    """A registered model version: ``uri`` (``models:/NAME/VERSION``) loads it anywhere the
    same registry (``tracking_uri``) is reachable; ``alias`` is None when none was set."""

    name: str
    version: int
    alias: str | None
    tracking_uri: str
    tags: Mapping[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def gates_passed(self) -> bool:
        return self.tags.get("medclf.gates.passed") == "true"


# The registry's own options, as keywords; everything else is a registry setting
# (mlflow.tracking_uri, runs_root).
_REGISTER_OPTIONS = ("description", "tags", "force", "reason")


def register(model: str | Path, name: str, alias: str | None = None, **options: Any) -> Registered:
    """``medclf register RUN name=NAME``: the run's current ONNX export becomes a new version
    of ``name``, with its test metrics, gates and model card; ``alias`` is set only when the
    gates passed (``force=True`` with a ``reason`` overrides, and is recorded). Keywords:
    ``description``, ``tags`` (a dict), ``force``, ``reason``, and the registry's settings
    (``**{"mlflow.tracking_uri": URI}``, ``runs_root``)."""
    own = {k: options.pop(k) for k in _REGISTER_OPTIONS if k in options}
    return register_words(str(model), name, alias, own, words(options))


def register_words(
    spec: str, name: str, alias: str | None, own: Mapping[str, Any], settings: list[str]
) -> Registered:
    """The registration the CLI and ``register()`` share (``settings``: registry words)."""
    from medclf.artifacts import registry_settings
    from medclf.registry.register import register as do_register

    if not spec:
        raise MedclfError("register needs the run folder: medclf register RUN name=NAME")
    if not name:
        raise MedclfError("register needs name=NAME (the registered model's name)")
    uri, runs_root = registry_settings(settings)
    done = do_register(
        spec,
        name,
        uri,
        runs_root,
        alias=alias,
        description=own.get("description"),
        tags={str(k): str(v) for k, v in dict(own.get("tags") or {}).items()},
        force=bool(own.get("force", False)),
        reason=own.get("reason"),
    )
    return Registered(done.name, int(done.version), done.alias, uri, dict(done.tags))


def synth(out: str | Path, per_class: int = 150, size: int = 128, seed: int = 0) -> Path:
    """Write synthetic chest-CT phantoms (4 classes, 16-bit PNG + manifest.csv) to ``out``
    (``medclf synth``); the same seed writes the same files. Returns ``out``."""
    from medclf.data.synth import generate

    generate(Path(out), per_class=per_class, size=size, seed=seed)
    return Path(out)


@dataclass(frozen=True)
class Exported:
    path: Path  # the file a caller serves: the INT8 one when asked for and kept
    result: Any  # export.onnx.ExportResult: parity and the INT8 comparison


def export_run(spec: str, format: str, quantize: str | None, settings: list[str]) -> Exported:
    """The export the CLI and ``export()`` share: ``settings`` are ``export.*`` words."""
    from medclf.config import compose
    from medclf.export.onnx import export_onnx
    from medclf.inference.records import INT8_FILE

    if format != "onnx":
        raise MedclfError(f"format={format} is not supported; use format=onnx")
    if quantize not in (None, "int8", "none"):
        raise MedclfError(f"quantize={quantize} is not supported; use quantize=int8")
    checked = compose(settings).export  # before any file is read
    result = export_onnx(spec, quantize=quantize, settings=checked)
    # an INT8 file that lost accuracy is refused by export_onnx (MedclfError), never returned
    path = result.onnx_path.with_name(INT8_FILE) if quantize == "int8" else result.onnx_path
    return Exported(path, result)
