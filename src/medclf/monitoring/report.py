"""The monitor's outputs: ``monitor.json`` and ``report.html`` (one self-contained file:
figures inlined as base64 PNG, no scripts), written together into a staged folder."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from medclf import __version__
from medclf.atomic import atomic_dir, write_json, write_text
from medclf.formatting import number
from medclf.monitoring.features import INTENSITY_FEATURES
from medclf.monitoring.profile import ReferenceProfile

SECTIONS = [
    ("alerts", "Alerts"),
    ("input-drift", "Input drift"),
    ("prediction-drift", "Prediction drift"),
    ("performance", "Performance estimate"),
    ("settings", "Settings"),
]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(reference: ReferenceProfile, current_features: np.ndarray, result: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(INTENSITY_FEATURES)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), dpi=100)
    for j, (ax, name) in enumerate(zip(axes, INTENSITY_FEATURES, strict=True)):
        ref, cur = reference.intensity[:, j], current_features[:, j]
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=20)
        ax.hist(ref, bins, density=True, alpha=0.5, label="reference")
        ax.hist(cur, bins, density=True, alpha=0.5, label="new")
        ax.set_title(f"{name} (PSI {result['input_drift'][name]['psi']:.2f})", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    figures = {"intensity": _png(fig)}
    hist = result["prediction_drift"]["confidence_histogram"]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    edges = np.asarray(hist["edges"])
    for key, label, shift in (("reference", "validation and test", 0.0), ("current", "new", 0.5)):
        width = np.diff(edges) / 2
        ax.bar(edges[:-1] + width * shift, hist[key], width=width, align="edge", label=label)
    ax.set(xlabel="confidence of the predicted class", ylabel="share of images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures["confidence"] = _png(fig)
    return figures


def write_outputs(
    out: Path, model: dict[str, Any], result: dict, reference: ReferenceProfile, current: Any
) -> Path:
    """``out/monitor.json`` and ``out/report.html``; ``out`` appears whole or not at all."""
    env = Environment(
        loader=PackageLoader("medclf.monitoring", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    html = env.get_template("monitor.html.j2").render(
        model=model,
        result=result,
        sections=SECTIONS,
        figures=_figures(reference, current.features, result),
        num=number,
        version=__version__,
    )
    with atomic_dir(out) as staging:
        write_json(staging / "monitor.json", {"model": model, **result})
        write_text(staging / "report.html", html)
    return out
