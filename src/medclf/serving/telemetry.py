"""The service's Prometheus metrics (prometheus-client), one registry per app so that two
apps in one process (tests) never share counters.

Names: ``medclf_requests_total{route,status}``, ``medclf_request_seconds{route}``,
``medclf_stage_seconds{stage=queue|preprocess|inference}``, ``medclf_batch_size``,
``medclf_predictions_total{class,decision}``, ``medclf_errors_total{kind}``,
``medclf_model_info{name,version,backend,registered_name,registered_version}``.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "Telemetry"]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# seconds: 1 ms to 10 s, dense where a CPU model answers (10-200 ms)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
_LATENCY += (0.75, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    def __init__(self, model: dict[str, Any]) -> None:
        disable_created_metrics()  # the *_created series only double the output
        self.paths: set[str] = set()  # the app's routes; any other path is one label
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "medclf_requests", "Requests answered", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "medclf_request_seconds", "Time to answer", ["route"], buckets=_LATENCY, registry=r
        )
        self.stage_seconds = Histogram(
            "medclf_stage_seconds",
            "Time per image in each stage: queue (waiting for a batch), preprocess (decode, "
            "resize, normalize), inference (the batch's model call)",
            ["stage"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "medclf_batch_size",
            "Images per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.predictions = Counter(
            "medclf_predictions",
            "Predictions by class and decision",
            ["class", "decision"],
            registry=r,
        )
        self.errors = Counter("medclf_errors", "Refused inputs by kind", ["kind"], registry=r)
        info = Gauge(
            "medclf_model_info",
            "The served model (value 1)",
            ["name", "version", "backend", "registered_name", "registered_version"],
            registry=r,
            multiprocess_mode="max",  # one series for the model, whatever the worker count
        )
        registered = model.get("registered") or {}
        info.labels(
            model["name"],
            model["version"],
            model["backend"],
            registered.get("name", ""),
            registered.get("version", ""),
        ).set(1)

        # drift of the latest predictions against the model's reference (monitoring.live);
        # per worker process with several workers (each sees its own traffic)
        self.drift_psi = Gauge(
            "medclf_drift_psi",
            "PSI of an intensity feature, latest images vs the reference",
            ["feature"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.drift_class_psi = Gauge(
            "medclf_drift_class_psi",
            "PSI of the predicted-class shares, latest images vs the held-out images",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.expected_accuracy = Gauge(
            "medclf_expected_accuracy",
            "Label-free accuracy estimate (mean calibrated confidence) of the latest images",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.estimate_valid = Gauge(
            "medclf_expected_accuracy_valid",
            "1 while no intensity feature drifts (PSI <= 0.25); 0: the expected accuracy is "
            "NaN, since a confidence-based estimate does not hold under input drift",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.drift_images = Gauge(
            "medclf_drift_window_images",
            "Images the drift gauges were computed on (0: too few yet, or no reference)",
            registry=r,
            multiprocess_mode="liveall",
        )

    def drift(self, values: dict[str, Any] | None) -> None:
        """Set the drift gauges from ``LiveWindow.values()`` (None: too few images yet)."""
        self.drift_images.set(values["images"] if values else 0)
        if not values:
            return
        self.drift_class_psi.set(values["class_psi"])
        self.expected_accuracy.set(values["expected_accuracy"])
        self.estimate_valid.set(1 if values.get("estimate_valid", True) else 0)
        for feature, value in values["psi"].items():
            self.drift_psi.labels(feature).set(value)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)

    def answered(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def refused(self, path: str, status: int, kind: str) -> None:
        """A request answered before it reached the app (a declared body over the limit), or
        whose client went away mid-upload (status 499, as nginx logs it)."""
        self.errors.labels(kind).inc()
        self.requests.labels(path if path in self.paths else "unmatched", str(status)).inc()

    def predicted(self, label: str, decision: str, stages: dict[str, float]) -> None:
        self.predictions.labels(label, decision or "none").inc()
        for stage, seconds in stages.items():
            self.stage_seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        """This process's metrics; with several workers (``PROMETHEUS_MULTIPROC_DIR`` set by
        ``medclf serve``), every worker's, added up by prometheus-client's multiprocess
        collector."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
