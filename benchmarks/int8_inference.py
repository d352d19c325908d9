"""Inference speed and size: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8, same run.

The model is a medclf run of timm's resnet18 at 224 px, 3 channels: by default one trained for
a few batches on the synthetic phantoms (speed does not depend on how well it learned), or
``--run RUN`` for a trained run (then the accuracy cost on its test split is meaningful too).
The run is exported through ``medclf export quantize=int8`` (the real code path: static QDQ,
calibrated on training images) and the three sides are timed on the same real images with 2
CPU threads each: batch-1 latency p50/p95 (alternating single calls) and batch-32 images/s
(alternating repeats, min and median). Sizes are the files on disk (the checkpoint's weights
for PyTorch).

    .venv/bin/python benchmarks/int8_inference.py [--run RUN] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import alternate, ratio_text

REPO = Path(__file__).resolve().parents[1]


def _medclf(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "medclf", *args], cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"medclf {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def tiny_run(work: Path) -> Path:
    """resnet18 at 224 px RGB, trained for two batches on the phantoms, evaluated, exported."""
    from medclf.data.synth import generate

    data = work / "synth"
    generate(data, per_class=40, size=224, seed=0)
    out = _medclf(
        "train",
        f"data.path={data}",
        "recipe=none",
        "model=resnet18",
        "model.pretrained=false",
        "data.image_size=224",
        "data.channels=3",
        "train.max_epochs=1",
        "train.limit_train_batches=2",
        "train.progress_bar=false",
        "logger=[]",
        "runs_root=runs",
        cwd=work,
    )
    run = work / next(
        line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run:")
    )
    _medclf("evaluate", f"model={run}", "eval.n_bootstrap=0", "eval.latency_runs=0", cwd=work)
    return run


def _sessions(run: Path, threads: int) -> dict[str, object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return {
        name: ort.InferenceSession(
            str(run / "export" / file), options, providers=["CPUExecutionProvider"]
        )
        for name, file in (
            ("onnxruntime fp32", "model.onnx"),
            ("onnxruntime int8", "model.int8.onnx"),
        )
    }


def measure(run: Path, threads: int, single_runs: int, repeats: int) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from medclf.data.transform import model_input
    from medclf.inference.predictor import TorchPredictor

    torch.set_num_threads(threads)
    reference = TorchPredictor(run)
    table = pd.read_csv(run / "split.csv")
    paths = table.loc[table["split"] == "test", "path"].tolist()
    images = np.stack([model_input(reference.prep, p) for p in (paths * 32)[:32]])
    sessions = _sessions(run, threads)

    def torch_call(x: np.ndarray):
        with torch.inference_mode():
            return reference.model(torch.from_numpy(x))

    calls = {"pytorch eager": torch_call}
    for name, session in sessions.items():
        calls[name] = lambda x, s=session: s.run(["probabilities"], {"input": x})
    one = images[:1]
    for call in calls.values():  # warm-up: first-call allocations and kernel choice
        for _ in range(3):
            call(one)
        call(images)
    single: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(single_runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call(one)
            single[name].append((time.perf_counter() - start) * 1000)

    def timed(call):
        def run_once() -> None:
            call(images)

        return run_once

    batch = alternate({name: timed(call) for name, call in calls.items()}, repeats)
    sizes = {
        "pytorch eager": (run / "weights" / "best.ckpt").stat().st_size,
        "onnxruntime fp32": (run / "export" / "model.onnx").stat().st_size,
        "onnxruntime int8": (run / "export" / "model.int8.onnx").stat().st_size,
    }
    print(
        f"resnet18 at {reference.prep.image_size} px, {threads} CPU threads, "
        f"{len(paths)} test images"
    )
    print(f"{'':18} {'batch-1 p50':>12} {'batch-1 p95':>12} {'batch-32 img/s':>15} {'size MB':>8}")
    for name in calls:
        p50 = statistics.median(single[name])
        p95 = float(np.percentile(single[name], 95))
        ips = 32 / batch[name].min
        print(f"{name:18} {p50:9.1f} ms {p95:9.1f} ms {ips:15.1f} {sizes[name] / 1e6:8.1f}")
    fp32, int8, eager = batch["onnxruntime fp32"], batch["onnxruntime int8"], batch["pytorch eager"]
    p50 = {name: statistics.median(v) for name, v in single.items()}
    speedup = p50["onnxruntime fp32"] / p50["onnxruntime int8"]
    print(
        f"int8 vs fp32: batch-1 p50 {speedup:.2f}x faster, "
        f"batch-32 {ratio_text(fp32, int8, 2)} faster, size "
        f"{sizes['onnxruntime int8'] / sizes['onnxruntime fp32']:.2f}x"
    )
    print(
        f"int8 vs pytorch eager: batch-1 p50 {p50['pytorch eager'] / p50['onnxruntime int8']:.2f}x"
        f" faster, batch-32 {ratio_text(eager, int8, 2)} faster"
    )
    q = json.loads((run / "export" / "parity.json").read_text())["int8"]
    auc = q["macro_auc_delta"]
    print(
        f"accuracy cost on {q['images']} test images: accuracy {q['fp32']['accuracy']:.3f} -> "
        f"{q['int8']['accuracy']:.3f} ({q['accuracy_delta']:+.3f}), macro AUC delta "
        f"{'n/a' if auc is None else f'{auc:+.3f}'}, top-1 agreement {q['top1_agreement']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained resnet18 run (default: a tiny one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single-runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--max-drop", type=float, default=0.05, help="export.int8_max_drop for the export"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medclf-int8-bench-") as tmp:
        run = args.run.resolve() if args.run else tiny_run(Path(tmp))
        _medclf(
            "export",
            f"model={run}",
            "quantize=int8",
            f"export.int8_max_drop={args.max_drop}",
            cwd=Path(tmp),
        )
        measure(run, args.threads, args.single_runs, args.repeats)


if __name__ == "__main__":
    main()
