"""Figures for the evaluation folder (matplotlib, headless; written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medclf.atomic import atomic_path
from medclf.plotting import pyplot


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
    return path


def plot_confusion_matrix(cm: np.ndarray, class_names: tuple[str, ...], path: Path, title: str):
    """Counts and row-normalized (per true class: sensitivity on the diagonal), side by side."""
    plt = pyplot()
    cm = np.asarray(cm)
    n = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * n + 5, 1.0 * n + 2.8), dpi=110)
    for ax, data, fmt, sub in (
        (axes[0], cm, "{:d}", "counts"),
        (axes[1], norm, "{:.2f}", "row-normalized"),
    ):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(n), class_names, rotation=35, ha="right")
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub)
        high = data.max() / 2 if data.size else 0
        for i in range(n):
            for j in range(n):
                value = int(data[i, j]) if fmt == "{:d}" else data[i, j]
                color = "white" if data[i, j] > high else "black"
                ax.text(j, i, fmt.format(value), ha="center", va="center", color=color)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc_pr(y: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], path: Path, values):
    """One-vs-rest ROC and precision-recall curves per class (sklearn's curve points)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    for i, c in enumerate(classes):
        truth = y == i
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, probs[:, i])
        auc = values.get(f"roc_auc[{c}]", {}).get("value", float("nan"))
        roc_ax.plot(fpr, tpr, label=f"{c} (AUC {auc:.3f})")
        precision, recall, _ = precision_recall_curve(truth, probs[:, i])
        ap = values.get(f"pr_auc[{c}]", {}).get("value", float("nan"))
        pr_ax.step(recall, precision, where="post", label=f"{c} (AP {ap:.3f})")
    roc_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, one-vs-rest")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(calibration: dict[str, Any], path: Path):
    """Accuracy against confidence per bin, before and after temperature scaling."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110, sharey=True)
    for ax, key in zip(axes, ("before", "after"), strict=True):
        part = calibration[key]
        rel = part["reliability"]
        edges = np.asarray(rel["edges"])
        width = np.diff(edges)
        acc = np.nan_to_num(np.asarray(rel["accuracy"], float))
        conf = np.asarray(rel["confidence"], float)
        ax.bar(
            edges[:-1],
            acc,
            width=width,
            align="edge",
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        gap_mask = np.isfinite(conf)
        ax.bar(
            edges[:-1][gap_mask],
            (conf - acc)[gap_mask],
            bottom=acc[gap_mask],
            width=width[gap_mask],
            align="edge",
            color="tab:red",
            alpha=0.35,
            label="gap",
        )
        ax.plot([0, 1], [0, 1], ls="--", color="grey")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence",
            title=f"{key} (T={part['temperature']:.2f}): ECE {part['ece']:.3f}, "
            f"Brier {part['brier']:.3f}",
        )
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class_bars(values: dict[str, dict[str, Any]], classes: tuple[str, ...], path: Path):
    """Sensitivity, specificity, PPV, NPV and F1 per class with their CI whiskers."""
    plt = pyplot()
    metrics = ("sensitivity", "specificity", "ppv", "npv", "f1")
    fig, ax = plt.subplots(figsize=(max(7, 2.2 * len(classes) + 3), 4.5), dpi=110)
    width = 0.8 / len(metrics)
    x = np.arange(len(classes))
    for k, m in enumerate(metrics):
        v = np.array([values[f"{m}[{c}]"]["value"] for c in classes])
        lo = np.array([values[f"{m}[{c}]"].get("ci_low", np.nan) for c in classes])
        hi = np.array([values[f"{m}[{c}]"].get("ci_high", np.nan) for c in classes])
        err = np.nan_to_num(np.vstack([v - lo, hi - v]).clip(min=0))
        ax.bar(x + (k - 2) * width, v, width, yerr=err, capsize=3, label=m)
    ax.set_xticks(x, classes, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value (95% CI)")
    ax.legend(ncol=len(metrics), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _show(ax, image: np.ndarray) -> None:
    """A CxHxW [0,1] image (or HxWx3 overlay) as grayscale/RGB without axes."""
    img = np.moveaxis(image, 0, -1) if image.ndim == 3 and image.shape[0] in (1, 3) else image
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.axis("off")


def plot_gallery(tiles: list[tuple[np.ndarray, str]], path: Path, title: str, cols: int = 6):
    """Images with captions in a grid (top losses, Grad-CAM overlays)."""
    plt = pyplot()
    rows = max(1, -(-len(tiles) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.9 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, caption) in zip(axes.flat, tiles, strict=False):
        _show(ax, image)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
