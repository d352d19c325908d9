"""``training_curves.png``: loss, metrics and learning rate per epoch, from ``metrics.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medclf.atomic import atomic_path
from medclf.plotting import pyplot


def plot_training_curves(metrics_csv: Path, out: Path) -> Path | None:
    """Three panels (loss, validation metrics, learning rates), stage boundaries dashed."""
    if not metrics_csv.is_file():
        return None
    df = pd.read_csv(metrics_csv)
    if df.empty:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    x = df["epoch"] + 1
    panels = [
        (axes[0], ["train/loss", "val/loss"], "loss", False),
        (axes[1], ["train/acc", "val/acc", "val/f1_macro", "val/auc_macro"], "metric", False),
        (axes[2], [c for c in df.columns if c.startswith("lr/")], "learning rate", True),
    ]
    for ax, cols, label, log_scale in panels:
        for col in cols:
            if col in df and df[col].notna().any():
                ax.plot(x, df[col], marker="o", markersize=3, label=col)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        values = df[[c for c in cols if c in df]].stack()
        if log_scale and len(values) and (values > 0).all():
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if "stage" in df:
        changes = x[df["stage"].ne(df["stage"].shift()) & (df.index > 0)]
        for ax in axes:
            for epoch in changes:
                ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=1)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
