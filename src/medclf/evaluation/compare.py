"""``medclf compare RUN...``: rank evaluated runs by one metric, with everything that decides
between them (intervals, calibration, gates, latency, size) side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from medclf.atomic import atomic_path
from medclf.errors import MedclfError
from medclf.formatting import estimate as fmt
from medclf.metric_names import resolve_metric
from medclf.run_config import load_run_config
from medclf.rundir import RunDir


@dataclass
class Comparison:
    table: pd.DataFrame
    csv: Path
    html: Path


def _model_size(run: RunDir) -> tuple[float, float]:
    """(parameters in millions, megabytes of the weights file: best.ckpt, or export/model.onnx
    for a registered version's release folder, which has no checkpoint)."""
    if not run.best_ckpt.is_file():
        import onnx

        from medclf.inference import records

        onnx_file = run.export_dir / records.FP32_FILE
        graph = onnx.load(onnx_file).graph
        params = sum(int(np.prod(t.dims)) for t in graph.initializer)
        return params / 1e6, onnx_file.stat().st_size / 2**20
    from medclf.models.checkpoint import load_checkpoint

    state = load_checkpoint(run.best_ckpt)["state_dict"]
    params = sum(v.numel() for k, v in state.items() if k.startswith("model."))
    return params / 1e6, run.best_ckpt.stat().st_size / 2**20


def _row(path: str, split: str, metric) -> dict[str, Any]:
    from medclf.registry.fetch import registered_of

    registered = registered_of(path)  # a registered version's release folder
    run = RunDir.open(path, need_weights=registered is None)
    metrics_file = run.eval_dir(split) / "metrics.json"
    if not metrics_file.is_file():
        raise MedclfError(
            f"{path}: no eval/{split}/metrics.json; run 'medclf evaluate model={path}"
            f"{'' if split == 'test' else ' split=' + split}' first"
        )
    m = json.loads(metrics_file.read_text())
    gates = json.loads((run.eval_dir(split) / "gates.json").read_text())
    key = metric.name
    if metric.scope != "overall" or key not in m["overall"]:
        raise MedclfError(f"--metric {key}: not an overall metric of {metrics_file}")
    params, size = _model_size(run)
    lat = m.get("latency", {})
    n_pass = sum(g["passed"] for g in gates["gates"])
    return {
        "run": f"models:/{registered['name']}/{registered['version']}" if registered else run.name,
        "path": str(run.root),
        "model": load_run_config(run.config).model.name,
        "_sort": m["overall"][key]["value"],
        key: fmt(m["overall"][key]),
        **{
            k: fmt(m["overall"].get(k))
            for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
            if k != key
        },
        "ece_calibrated": round(m["calibration"]["after"]["ece"], 4),
        "brier": round(m["calibration"]["after"]["brier"], 4),
        "gates": f"{n_pass}/{len(gates['gates'])}",
        "gates_passed": bool(gates["passed"]),
        "latency_p95_ms": round(lat["latency_p95_ms"], 2) if lat.get("runs") else None,
        "images_per_s": round(lat["throughput_images_per_s"], 1) if lat.get("runs") else None,
        "params_m": round(params, 3),
        "size_mb": round(size, 2),
        "test_images": m["evaluated"]["images"],
    }


def compare_runs(
    runs: list[str], metric: str = "macro_auc", split: str = "test", out: str | Path = "."
) -> Comparison:
    if not runs:
        raise MedclfError("no runs given; usage: medclf compare RUN RUN... [--metric macro_auc]")
    spec = resolve_metric(metric)
    rows = [_row(r, split, spec) for r in runs]
    table = pd.DataFrame(rows).sort_values(
        "_sort", ascending=not spec.higher_is_better, kind="stable", na_position="last"
    )
    table.insert(0, "rank", range(1, len(table) + 1))
    table = table.drop(columns="_sort")
    out = Path(out)
    csv, html = out / "compare.csv", out / "compare.html"
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    columns = [c for c in table.columns if c not in ("path", "gates_passed")]
    page = (
        Environment(
            loader=PackageLoader("medclf.evaluation", "templates"),
            autoescape=select_autoescape(default=True),
        )
        .get_template("compare.html.j2")
        .render(metric=spec.name, split=split, columns=columns, rows=table.to_dict("records"))
    )
    with atomic_path(html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Comparison(table=table, csv=csv, html=html)
