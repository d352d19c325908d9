"""Which logged metric picks the best epoch (``train.monitor``), named through the one
metric alias table (``evaluation/metrics.py``): ``val/accuracy``, ``val/acc`` and ``val/ACC``
are one metric, and its direction decides ``train.monitor_mode=auto``."""

from __future__ import annotations

from medclf.errors import MedclfError
from medclf.evaluation.metrics import resolve_metric

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
        logged_as = {v: k for k, v in logged.items()}  # the logged names stand for themselves
        try:
            entry = resolve_metric(logged_as.get(metric, metric)) if metric else None
        except MedclfError:
            entry = None
        if entry is None or entry.name not in logged:
            names = ", ".join(f"{split}/{k}" for k in ("loss", *logged.values()))
            raise MedclfError(f"train.monitor={name}: training logs {names}")
        key, best = logged[entry.name], "max" if entry.higher_is_better else "min"
    if mode not in ("auto", best):
        raise MedclfError(
            f"train.monitor={name} with train.monitor_mode={mode} would keep the worst epoch; "
            f"use train.monitor_mode={best} (or auto)"
        )
    return f"{split}/{key}", best
