"""The monitor's outputs: ``monitor.json`` and ``report.html`` (one self-contained file:
figures inlined as base64 PNG, no scripts), written together into a staged folder."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from medclf import embedding
from medclf.atomic import atomic_dir, write_json, write_text
from medclf.formatting import number
from medclf.monitoring.features import INTENSITY_FEATURES
from medclf.monitoring.profile import ReferenceProfile
from medclf.plotting import pyplot
from medclf.version import __version__

SECTIONS = [
    ("alerts", "Alerts"),
    ("input-drift", "Input drift"),
    ("prediction-drift", "Prediction drift"),
    ("performance", "Performance estimate"),
    ("windows", "Over time"),
    ("settings", "Settings"),
]


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(reference: ReferenceProfile, current: Any, result: dict) -> dict:
    figures = {"confidence": _confidence_figure(result["prediction_drift"])}
    recorded = current.features[~np.isnan(current.features).any(axis=1)]
    if result["input_drift"]:
        figures["intensity"] = _intensity_figure(reference, recorded, result["input_drift"])
    if result["embedding_drift"]:
        vectors = current.embeddings[~np.isnan(current.embeddings).any(axis=1)]
        figures["embedding"] = _embedding_figure(reference.embeddings, vectors)
    if result["windows"]:
        figures["windows"] = _windows_figure(result["windows"])
    return figures


def _intensity_figure(reference: ReferenceProfile, current: np.ndarray, drift: dict) -> str:
    plt = pyplot()
    n = len(INTENSITY_FEATURES)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), dpi=100)
    for j, (ax, name) in enumerate(zip(axes, INTENSITY_FEATURES, strict=True)):
        ref, cur = reference.intensity[:, j], current[:, j]
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=20)
        ax.hist(ref, bins, density=True, alpha=0.5, label="reference")
        ax.hist(cur, bins, density=True, alpha=0.5, label="new")
        ax.set_title(f"{name} (PSI {drift[name]['psi']:.2f})", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _embedding_figure(reference: np.ndarray, current: np.ndarray) -> str:
    """Both samples on the first two principal axes of the reference embeddings."""
    plt = pyplot()
    center = reference.mean(axis=0)
    axes = np.linalg.svd(reference - center, full_matrices=False)[2][:2].T
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for rows, label in ((reference, "validation"), (current, "new")):
        xy = (rows - center) @ axes
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.5, label=label)
    ax.set(xlabel="first principal axis", ylabel="second principal axis")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _confidence_figure(drift: dict) -> str:
    plt = pyplot()
    hist = drift["confidence_histogram"]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    edges = np.asarray(hist["edges"])
    width = np.diff(edges) / 2
    for key, label, shift in (("reference", "validation and test", 0.0), ("current", "new", 1.0)):
        ax.bar(edges[:-1] + width * shift, hist[key], width=width, align="edge", label=label)
    ax.set(xlabel="confidence of the predicted class", ylabel="share of images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _windows_figure(windows: list[dict]) -> str:
    plt = pyplot()
    x = np.arange(len(windows))
    acc = np.array([[w["accuracy"][k] for k in ("value", "low", "high")] for w in windows])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.2), dpi=100)
    axes[0].plot(x, acc[:, 0], marker="o")
    axes[0].fill_between(x, acc[:, 1], acc[:, 2], alpha=0.25)
    axes[0].set_title("label-free accuracy", fontsize=9)
    axes[1].plot(x, [w["class_psi"] for w in windows], marker="o")
    axes[1].set_title("class-share PSI", fontsize=9)
    refer = [np.nan if w["refer_share"] is None else w["refer_share"] for w in windows]
    axes[2].plot(x, refer, marker="o")
    axes[2].set_title("refer share", fontsize=9)
    labels = [w["start"][:16] for w in windows]
    for ax in axes:
        ax.set_xticks(x, labels, rotation=30, fontsize=7, ha="right")
    fig.tight_layout()
    return _png(fig)


def write_outputs(
    out: Path,
    model: dict[str, Any],
    result: dict,
    reference: ReferenceProfile,
    current: Any,
    evidently: bool = False,
) -> Path:
    """``out/monitor.json`` and ``out/report.html`` (and Evidently's reports with
    ``evidently``); ``out`` appears whole or not at all."""
    with atomic_dir(out) as staging:
        if evidently:
            from medclf.monitoring.evidently_report import render

            result["evidently"] = render(reference, current, staging)
        write_json(staging / "monitor.json", {"model": model, **result})
        write_text(staging / "report.html", _html(model, result, reference, current))
    return out


def _html(model: dict[str, Any], result: dict, reference: ReferenceProfile, current: Any) -> str:
    env = Environment(
        loader=PackageLoader("medclf.monitoring", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    return env.get_template("monitor.html.j2").render(
        model=model,
        result=result,
        sections=SECTIONS,
        figures=_figures(reference, current, result),
        embedding_size=embedding.SIZE,
        num=number,
        version=__version__,
    )
