"""Figures for the evaluation folder (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclf.atomic import atomic_path


def plot_confusion_matrix(cm: np.ndarray, class_names: tuple[str, ...], path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 3, 1.0 * n + 2.5), dpi=120)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=35, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > threshold else "black",
            )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
