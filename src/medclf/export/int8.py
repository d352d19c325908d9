"""INT8 export: static QDQ quantization with onnxruntime, with its accuracy cost measured.

Why static and not dynamic quantization: dynamic quantization computes activation ranges at
run time and, in onnxruntime, quantizes only MatMul/Gemm-like ops; a CNN's convolutions stay in
fp32, so it gains almost nothing for the models medclf trains. Static quantization calibrates
every activation range once, here on training-split images passed through the run's own
preprocessing (never validation or test), and quantizes the convolutions too (per-channel
int8 weights, uint8 activations, QDQ format, which onnxruntime fuses into integer kernels).
The final temperature division and softmax stay in float so the calibrated probabilities keep
their resolution.

The INT8 file is then evaluated beside the fp32 file on the test split: accuracy and macro AUC
of both, their deltas, top-1 agreement, size and batch-1 latency ratios go to ``parity.json``.
A drop larger than ``export.int8_max_drop`` refuses the file: ``model.int8.onnx`` is not
written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.atomic import atomic_path, dumps_json, write_json
from medclf.data.folds import training_rows
from medclf.data.transform import model_input
from medclf.errors import MedclfError
from medclf.inference import records
from medclf.inference.predictor import OnnxPredictor
from medclf.preprocessing import Preprocessing
from medclf.rundir import RunDir

log = logging.getLogger("medclf")
CALIBRATION_BATCH = 16
LATENCY_RUNS = 20
QUANTIZATION = {
    "method": "static",
    "format": "QDQ",
    "weights": "int8 per channel",
    "activations": "uint8",
    "calibration": "minmax",
}


def _calibration_batches(prep: Preprocessing, paths: Sequence[str]) -> Iterator[np.ndarray]:
    for start in range(0, len(paths), CALIBRATION_BATCH):
        chunk = paths[start : start + CALIBRATION_BATCH]
        yield np.stack([model_input(prep, p) for p in chunk]).astype(np.float32)


def quantize(fp32: Path, out: Path, prep: Preprocessing, paths: Sequence[str], name: str) -> None:
    """Write the static INT8 version of ``fp32`` to ``out``, calibrated on ``paths``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _calibration_batches(prep, paths)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    with tempfile.TemporaryDirectory(prefix="medclf-int8-") as work:
        pre = Path(work) / "pre.onnx"
        try:
            # ONNX shape inference and graph optimization before calibration; the symbolic
            # (sympy) pass is for transformer-style dynamic shapes and fails on some CNN concats
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            head = [n.name for n in onnx.load(pre).graph.node if n.op_type in ("Softmax", "Div")]
            quantize_static(
                str(pre),
                str(out),
                Images(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=head,
            )
        except MedclfError:
            raise
        except Exception as exc:  # the quantizer raises many internal types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise MedclfError(
                f"INT8 quantization of '{name}' failed ({type(exc).__name__}: {first}); the "
                "fp32 model.onnx is exported: use it, or export without quantize=int8"
            ) from exc


def _scores(predictor: OnnxPredictor, inputs: list[np.ndarray], y: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    probs = predictor.predict_arrays(inputs)
    auc = None
    if len(np.unique(y)) == probs.shape[1]:  # every class present: macro AUC is defined
        auc = float(
            roc_auc_score(y, probs[:, 1])
            if probs.shape[1] == 2
            else roc_auc_score(y, probs, multi_class="ovr", average="macro")
        )
    return {"probs": probs, "accuracy": float((probs.argmax(1) == y).mean()), "macro_auc": auc}


def _batch1_ms(predictors: Sequence[OnnxPredictor], x: np.ndarray) -> list[float]:
    """Median batch-1 latency of each predictor, timed alternately on the same image."""
    times: list[list[float]] = [[] for _ in predictors]
    for _ in range(3):
        for p in predictors:
            p.predict_batch(x)
    for _ in range(LATENCY_RUNS):
        for i, p in enumerate(predictors):
            start = time.perf_counter()
            p.predict_batch(x)
            times[i].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def compare(
    ref: OnnxPredictor, fp32: Path, int8: Path, paths: Sequence[str], labels: Sequence[str]
) -> dict:
    """The INT8 file against the fp32 file (``ref``, loaded from ``fp32``) on the same
    labelled images."""
    cand = OnnxPredictor(int8)
    index = {c: i for i, c in enumerate(ref.class_names)}
    y = np.array([index[label] for label in labels])
    inputs = [model_input(ref.prep, p) for p in paths]
    a, b = _scores(ref, inputs, y), _scores(cand, inputs, y)
    ms = _batch1_ms([ref, cand], inputs[0][None])
    aucs = (a["macro_auc"], b["macro_auc"])
    return {
        "images": len(paths),
        "fp32": {"accuracy": a["accuracy"], "macro_auc": aucs[0], "batch1_ms": ms[0]},
        "int8": {"accuracy": b["accuracy"], "macro_auc": aucs[1], "batch1_ms": ms[1]},
        "accuracy_delta": b["accuracy"] - a["accuracy"],
        "macro_auc_delta": None if None in aucs else aucs[1] - aucs[0],
        "top1_agreement": float((a["probs"].argmax(1) == b["probs"].argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(a["probs"] - b["probs"]).max()),
        "size_ratio": int8.stat().st_size / fp32.stat().st_size,
        "batch1_latency_ratio": ms[1] / ms[0],
    }


def _embed_int8_records(entries: dict[str, str], tmp: Path) -> str:
    """The fp32 file's records (``entries``), plus how this file was quantized, embedded in
    the INT8 file."""
    import onnx

    model = onnx.load(tmp)
    quantization = {records.ONNX_META_QUANTIZATION: dumps_json(QUANTIZATION, indent=None)}
    digest = records.embed(model, {**entries, **quantization})
    onnx.save_model(model, tmp)
    return digest


def export_int8(
    run: RunDir, fp32: Path, reference: OnnxPredictor, entries: dict[str, str], settings: Any
) -> dict[str, Any]:
    """quantize on training images -> embed the records -> compare with fp32 on the test split
    -> keep ``model.int8.onnx`` only when no drop exceeds ``export.int8_max_drop``.
    ``reference`` is the fp32 file, loaded; ``entries`` the records embedded in it."""
    table = pd.read_csv(run.split, dtype=str, keep_default_na=False)
    train, test = training_rows(table), table[table["split"] == "test"]
    if train.empty or test.empty:
        raise MedclfError(
            f"{run.split}: INT8 export needs training images to calibrate on and test images "
            "to measure its cost; this split.csv lacks one of them"
        )
    calibration = train.sample(
        n=min(int(settings.int8_calibration_images), len(train)), random_state=0
    )["path"].tolist()
    final = run.export_dir / records.INT8_FILE
    max_drop = float(settings.int8_max_drop)
    with atomic_path(final) as tmp:
        quantize(fp32, Path(tmp), reference.prep, calibration, run.name)
        digest = _embed_int8_records(entries, Path(tmp))
        paths, labels = test["path"].tolist(), test["label"].tolist()
        comparison = compare(reference, fp32, Path(tmp), paths, labels)
        drops = {
            "accuracy": -comparison["accuracy_delta"],
            "macro AUC": -(comparison["macro_auc_delta"] or 0.0),
        }
        comparison.update(max_drop=max_drop, passed=max(drops.values()) <= max_drop)
        comparison["calibration_images"] = len(calibration)
        _record_in_parity(run, comparison)
        if not comparison["passed"]:
            worst = max(drops, key=lambda k: drops[k])
            raise MedclfError(
                f"INT8 export refused: test {worst} drops by {drops[worst]:.3f} "
                f"(> export.int8_max_drop={max_drop}); model.int8.onnx not written, the fp32 "
                f"model.onnx stands (details in {run.export_dir / 'parity.json'})"
            )
    with final.open("rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    record = {
        "file": {"name": final.name, "sha256": sha256},
        "graph_sha256": digest,
        "quantization": QUANTIZATION,
        "comparison": comparison,
    }
    return {"record": record, "comparison": comparison, "path": final}


def _record_in_parity(run: RunDir, comparison: dict[str, Any]) -> None:
    path = run.export_dir / "parity.json"
    parity = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    parity["int8"] = comparison
    write_json(path, parity)
