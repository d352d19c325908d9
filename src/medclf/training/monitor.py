"""Which logged metric picks the best epoch (``train.monitor``), named through the one
metric alias table (``evaluation/metrics.py``): ``val/accuracy``, ``val/acc`` and ``val/ACC``
are one metric. ``train.monitor_mode=auto`` is min for the loss and max for the logged metrics
(accuracy, macro F1, macro AUC: all higher-is-better in the table)."""

from __future__ import annotations

from medclf.errors import MedclfError

# metric-table name -> the name the LightningModule logs it under (``val/<name>``)
LOGGED = {"accuracy": "acc", "macro_f1": "f1_macro", "macro_auc": "auc_macro"}
TRAIN_LOGGED = {"accuracy": "acc"}  # train/ logs only loss and accuracy


def resolve_monitor(name: str, mode: str) -> tuple[str, str]:
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
    a name that is not already a logged one, so composing the default config stays fast."""
    if metric in logged.values():
        return metric
    from medclf.evaluation.metrics import resolve_metric

    try:
        entry = resolve_metric(metric) if metric else None
    except MedclfError:
        entry = None
    if entry is None or entry.name not in logged:
        names = ", ".join(f"{split}/{k}" for k in ("loss", *logged.values()))
        raise MedclfError(f"train.monitor={split}/{metric}: training logs {names}") from None
    return logged[entry.name]
