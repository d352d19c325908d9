"""The one table of metric names (``METRICS``): each metric's name, its aliases, its scope and
whether higher is better. Reports, gates, ``compare`` and ``train.monitor`` all resolve names
through it, so ``recall``, ``TPR`` and ``sensitivity`` are one metric, and ``val/accuracy``,
``val/acc`` and ``val/ACC`` name one logged column. A plain table with no numeric imports, so
the config checks at compose can use it; the metrics themselves are ``evaluation/metrics.py``.

``train.monitor`` (which logged metric picks the best epoch) resolves through
``best_epoch_metric``: ``train.monitor_mode=auto`` is min for the loss and max for the logged
metrics (accuracy, macro F1, macro AUC: all higher-is-better in the table)."""

from __future__ import annotations

from dataclasses import dataclass

from medclf.errors import MedclfError


@dataclass(frozen=True)
class Metric:
    name: str
    aliases: tuple[str, ...]
    scope: str  # "overall" | "per_class" | "operating" (per class at the stored threshold)
    higher_is_better: bool
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("accuracy", ("acc",), "overall", True, "fraction of images classified correctly"),
    Metric(
        "balanced_accuracy",
        ("balanced_acc", "bacc"),
        "overall",
        True,
        "mean sensitivity over classes",
    ),
    Metric("macro_precision", ("macro_ppv",), "overall", True, "unweighted mean PPV"),
    Metric(
        "macro_recall",
        ("macro_sensitivity", "macro_tpr"),
        "overall",
        True,
        "unweighted mean sensitivity",
    ),
    Metric("macro_f1", ("f1_macro",), "overall", True, "unweighted mean F1"),
    Metric("weighted_precision", ("weighted_ppv",), "overall", True, "support-weighted PPV"),
    Metric(
        "weighted_recall",
        ("weighted_sensitivity",),
        "overall",
        True,
        "support-weighted sensitivity (equals accuracy)",
    ),
    Metric("weighted_f1", ("f1_weighted",), "overall", True, "support-weighted F1"),
    Metric("cohen_kappa", ("kappa",), "overall", True, "agreement beyond chance"),
    Metric("mcc", ("matthews_corrcoef",), "overall", True, "Matthews correlation coefficient"),
    Metric(
        "macro_auc",
        ("macro_roc_auc", "auc"),
        "overall",
        True,
        "mean one-vs-rest ROC-AUC (binary: ROC-AUC of the positive class)",
    ),
    Metric("macro_pr_auc", ("macro_average_precision",), "overall", True, "mean PR-AUC"),
    Metric("top2_accuracy", ("top_2_accuracy",), "overall", True, "true class among top 2"),
    Metric("top3_accuracy", ("top_3_accuracy",), "overall", True, "true class among top 3"),
    Metric(
        "quadratic_kappa",
        ("qwk", "quadratic_weighted_kappa"),
        "overall",
        True,
        "Cohen's kappa with quadratic weights (ordered grades only)",
    ),
    Metric(
        "mean_absolute_error",
        ("mae", "grade_mae"),
        "overall",
        False,
        "mean |predicted - true grade| in grades (ordered grades only)",
    ),
    Metric("ece", ("expected_calibration_error",), "overall", False, "binned |conf - acc|"),
    Metric("mce", ("max_calibration_error",), "overall", False, "worst bin |conf - acc|"),
    Metric("brier", ("brier_score",), "overall", False, "mean squared probability error"),
    Metric(
        "sensitivity",
        ("recall", "tpr", "true_positive_rate", "hit_rate"),
        "per_class",
        True,
        "TP / (TP + FN), one-vs-rest",
    ),
    Metric(
        "specificity",
        ("tnr", "true_negative_rate", "selectivity"),
        "per_class",
        True,
        "TN / (TN + FP), one-vs-rest",
    ),
    Metric("ppv", ("precision", "positive_predictive_value"), "per_class", True, "TP / (TP+FP)"),
    Metric("npv", ("negative_predictive_value",), "per_class", True, "TN / (TN + FN)"),
    Metric("f1", ("f1_score", "dice"), "per_class", True, "2TP / (2TP + FP + FN)"),
    Metric("roc_auc", ("auroc",), "per_class", True, "one-vs-rest ROC-AUC"),
    Metric("pr_auc", ("average_precision", "auprc"), "per_class", True, "average precision"),
    Metric("support", ("n",), "per_class", True, "images of the class"),
)
_BY_NAME = {m.name: m for m in METRICS}
_ALIASES = {alias: m.name for m in METRICS for alias in (m.name, *m.aliases)}
assert len(_ALIASES) == sum(1 + len(m.aliases) for m in METRICS), "an alias names two metrics"
PER_CLASS_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc", "pr_auc")
OPERATING_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1")


def resolve_metric(name: str) -> Metric:
    """The table entry for a name or alias (case-insensitive, '-' = '_')."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _ALIASES:
        known = ", ".join(m.name for m in METRICS)
        raise MedclfError(f"unknown metric '{name}' (known: {known}; aliases such as recall, tpr)")
    return _BY_NAME[_ALIASES[key]]


# metric-table name -> the name the LightningModule logs it under (``val/<name>``)
LOGGED = {"accuracy": "acc", "macro_f1": "f1_macro", "macro_auc": "auc_macro"}
TRAIN_LOGGED = {"accuracy": "acc"}  # train/ logs only loss and accuracy


def best_epoch_metric(name: str, mode: str) -> tuple[str, str]:
    """(logged key, "min" | "max") for ``train.monitor`` and ``train.monitor_mode``. Other
    logged columns (``lr/head``, ``perf/...``) pass through and need an explicit mode."""
    split, sep, metric = str(name).partition("/")
    if not sep or split not in ("val", "train"):
        if mode == "auto":
            raise MedclfError(
                f"train.monitor={name}: say whether higher or lower is better with "
                "train.monitor_mode=max or min"
            )
        return str(name), mode
    logged = LOGGED if split == "val" else TRAIN_LOGGED
    if metric == "loss":
        key, best = "loss", "min"
    else:
        key, best = _logged_key(split, metric, logged), "max"
    if mode not in ("auto", best):
        raise MedclfError(
            f"train.monitor={name} with train.monitor_mode={mode} would keep the worst epoch; "
            f"use train.monitor_mode={best} (or auto)"
        )
    return f"{split}/{key}", best


def _logged_key(split: str, metric: str, logged: dict[str, str]) -> str:
    """The logged name of ``metric`` (a logged name or any alias of one); every logged metric
    but the loss is higher-is-better. The alias table (and scipy with it) is imported only for
    a name that is not already a logged one."""
    if metric in logged.values():
        return metric
    try:
        entry = resolve_metric(metric) if metric else None
    except MedclfError:
        entry = None
    if entry is None or entry.name not in logged:
        names = ", ".join(f"{split}/{k}" for k in ("loss", *logged.values()))
        raise MedclfError(f"train.monitor={split}/{metric}: training logs {names}") from None
    return logged[entry.name]
