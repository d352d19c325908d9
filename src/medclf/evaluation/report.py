"""``report.html``: one self-contained file (figures inlined as base64 PNG, no scripts, no
external assets) that opens anywhere, sections in the order a reviewer reads them."""

from __future__ import annotations

import base64
from functools import partial
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from medclf.atomic import atomic_path
from medclf.evaluation.model_card import limitations
from medclf.formatting import interval, number
from medclf.version import __version__

SECTIONS = [
    ("summary", "Summary"),
    ("per-class", "Per class"),
    ("calibration", "Calibration"),
    ("operating-point", "Operating point"),
    ("gates", "Gates"),
    ("latency", "Latency"),
    ("subgroups", "Subgroups"),
    ("errors", "Errors"),
    ("explanations", "Grad-CAM"),
    ("training", "Training"),
    ("limitations", "Limitations"),
]
PER_CLASS = ["sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc", "pr_auc"]


def write_report(path: Path, run, metrics, values, gates, figures: dict[str, Path]) -> Path:
    images = {
        key: base64.b64encode(Path(p).read_bytes()).decode("ascii") for key, p in figures.items()
    }

    def figure(key: str, caption: str) -> Markup:
        if key not in images:
            return Markup("")
        return Markup(
            '<figure id="fig-{k}"><img alt="{c}" src="data:image/png;base64,{d}">'
            "<figcaption>{c}</figcaption></figure>"
        ).format(k=key, c=caption, d=images[key])

    env = Environment(
        loader=PackageLoader("medclf.evaluation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        run_name=run.name,
        ev=metrics["evaluated"],
        model=metrics["model"],
        version=__version__,
        sections=SECTIONS,
        gates=gates,
        ci=metrics["confidence_intervals"],
        overall=list(metrics["overall"].items()),
        classes=metrics["task"]["classes"],
        per_class_metrics=PER_CLASS,
        values=values,
        calibration=metrics["calibration"],
        op=metrics["operating_point"],
        latency=metrics["latency"],
        subgroups=metrics["subgroups"],
        images=images,
        limitations=limitations(metrics, values),
        figure=figure,
        num=number,
        interval=partial(interval, sep=" - "),
    )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return path
