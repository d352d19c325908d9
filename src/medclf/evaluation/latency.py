"""Latency on the evaluating machine: what one request costs and what a batch sustains.

Single-image latency is end to end as ``predict`` and ``serve`` run it (read the file,
preprocess, model, softmax, decision), timed over ``runs`` calls after warm-up; throughput is
model-only at batch 32 on already preprocessed inputs. Both use the predictor's own threads.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

WARMUP = 3
BATCH = 32


def measure_latency(predictor, evaluated, runs: int = 50) -> dict[str, Any]:
    if runs <= 0 or not len(evaluated.images):
        return {"runs": 0}
    import torch

    path = str(evaluated.table["path"].iloc[0])
    for _ in range(WARMUP):
        predictor.predict_one(path)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        predictor.predict_one(path)
        times.append((time.perf_counter() - t0) * 1000)
    reps = -(-BATCH // len(evaluated.images))
    images = (list(evaluated.images) * reps)[:BATCH]
    batch = np.stack([predictor.prep.normalize_array(a) for a in images]).astype(np.float32)
    predictor.predict_batch(batch)
    batch_times = []
    for _ in range(max(3, runs // 10)):
        t0 = time.perf_counter()
        predictor.predict_batch(batch)
        batch_times.append(time.perf_counter() - t0)
    return {
        "runs": runs,
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p95_ms": float(np.percentile(times, 95)),
        "throughput_images_per_s": float(BATCH / np.median(batch_times)),
        "batch_size": BATCH,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
