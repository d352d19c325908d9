"""``medclf demo``: the whole path on built-in synthetic CT phantoms, in minutes on a CPU."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from medclf.atomic import write_json
from medclf.formatting import estimate, number

log = logging.getLogger("medclf")
SYNTH_PARAMS = {"per_class": 150, "size": 128, "seed": 0}


def _ensure_dataset(folder: Path) -> Path:
    from medclf.data.synth import generate

    stamp = folder / "synth.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == SYNTH_PARAMS:
        log.info("[1/5] synthetic CT phantoms: reusing %s", folder)
        return folder
    log.info(
        "[1/5] synthetic CT phantoms: writing %d images to %s",
        4 * SYNTH_PARAMS["per_class"],
        folder,
    )
    generate(folder, **SYNTH_PARAMS)
    write_json(stamp, SYNTH_PARAMS)
    return folder


def _command_name() -> str:
    """How the user can call medclf again: plain ``medclf`` only if it is on PATH."""
    exe = Path(sys.argv[0])
    on_path = shutil.which("medclf")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "medclf"
    if exe.name == "medclf":
        return os.path.relpath(exe)
    return f"{Path(sys.executable).name} -m medclf"


# Long on purpose: the demo is a script a newcomer reads top to bottom (five numbered
# steps, then the printed summary).
def run_demo(overrides: list[str]) -> None:
    from medclf.config import compose
    from medclf.evaluation.evaluate import evaluate
    from medclf.export.onnx import export_onnx
    from medclf.inference.predictor import OnnxPredictor
    from medclf.training.run import train

    t0 = time.perf_counter()
    cfg = compose(["run_group=demo", *overrides])
    data_dir = _ensure_dataset(Path(cfg.runs_root) / "demo" / "data" / "synthetic_ct")
    if cfg.data.path is None:
        cfg.data.path = str(data_dir)
    from medclf.models.architectures import resolve_input_config

    resolve_input_config(cfg)
    log.info("[2/5] training %s on %s px images", cfg.model.name, cfg.data.image_size)
    trained = train(cfg)
    run = trained.run
    log.info("[3/5] evaluating on the held-out test split")
    ev = evaluate(run.root, "test")
    log.info("[4/5] exporting to ONNX and checking parity with PyTorch")
    ex = export_onnx(run.root)
    log.info("[5/5] predicting a few test images with the ONNX model")
    split = pd.read_csv(run.split, dtype=str, keep_default_na=False)
    samples = split[split["split"] == "test"].groupby("label").head(1)
    predictor = OnnxPredictor(ex.onnx_path)
    lines = []
    for path, label in zip(samples["path"], samples["label"], strict=True):
        out = predictor.predict_one(path)
        pred = out["prediction"]
        lines.append(
            f"  {Path(path).name:<18} true={label:<13} predicted={pred['class']:<13} "
            f"confidence={number(pred['confidence'])}  "
            f"decision={out['decision']['label'] or 'refer'}"
        )
    m = ev.metrics

    cal = m["calibration"]
    gates = ev.gates
    gate_line = "all passed" if gates["passed"] else "FAILED: " + ", ".join(gates["failed"])
    minutes = (time.perf_counter() - t0) / 60
    print(
        "\n".join(
            [
                "",
                f"medclf demo finished in {minutes:.1f} min",
                f"  test accuracy   {estimate(m['overall']['accuracy'])}   macro AUC "
                f"{estimate(m['overall']['macro_auc'])}   (n={m['evaluated']['images']}, 95% CI)",
                f"  calibration     T={number(cal['after']['temperature'], 2)}, ECE "
                f"{number(cal['before']['ece'])} -> {number(cal['after']['ece'])}",
                f"  quality gates   {gate_line}",
                f"  ONNX parity     max |dp| {ex.parity['max_abs_diff']:.1e} over "
                f"{ex.parity['images']} images",
                "predictions:",
                *lines,
                "where things are:",
                f"  run folder      {run.root}",
                f"  best weights    {run.best_ckpt}",
                f"  evaluation      {ev.out_dir}",
                f"  report          {ev.out_dir / 'report.html'}",
                f"  model card      {run.model_card}",
                f"  ONNX model      {ex.onnx_path}",
                "next:",
                f"  {_command_name()} serve model={ex.onnx_path}",
                "  curl -F file=@"
                + str(samples["path"].iloc[0])
                + " http://127.0.0.1:8000/predict",
            ]
        )
    )
