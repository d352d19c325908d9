"""Predictors: a run directory (PyTorch, best checkpoint) or an exported ONNX file.

Both take the same preprocessing and decision records and return calibrated probabilities
(``softmax(logits / temperature)``) with the operating-point decision, so predict, serve and
evaluate give the same numbers for the same file whichever backend answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medclf.data.io import tiny_image_warning
from medclf.data.transform import decode_file, fit
from medclf.decision import DecisionRecord
from medclf.errors import MedclfError
from medclf.inference.records import (
    MAX_ONNX_BYTES,
    ONNX_META_DECISION,
    ONNX_META_MODEL_NAME,
    ONNX_META_MODEL_VERSION,
    ONNX_META_MONITOR_REFERENCE,
    ONNX_META_PREPROCESSING,
    ONNX_META_RELEASE,
    recorded_file_sha256,
    verified_metadata,
)
from medclf.preprocessing import Preprocessing
from medclf.tta import averaged_logits

log = logging.getLogger("medclf")


class Predictor(ABC):
    prep: Preprocessing
    decision: DecisionRecord
    name: str
    version: str
    backend: str
    # the registered model version this is (name, version, alias), when it came from models:/
    registered: dict[str, Any] | None = None
    # training data, test metrics with intervals and gates of these weights (inference.release)
    release: dict[str, Any] | None = None

    @abstractmethod
    def _raw_logits(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 model input -> N x classes logits of the network alone."""

    def logits_batch(self, x: np.ndarray) -> np.ndarray:
        """N x classes logits before temperature, averaged over the decision record's
        test-time augmentation views (``medclf.tta``)."""
        return averaged_logits(self._raw_logits, x, self.decision.tta)

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 model input -> N x classes calibrated probabilities."""
        return self._calibrated(self.logits_batch(x))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        scaled = logits.astype(np.float64) / self.decision.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        e = np.exp(scaled)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict_embedded(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict_batch`` and the N x ``medclf.embedding.SIZE`` monitoring embeddings
        of the images as given (not of test-time augmentation views); None for a model that
        has no embedding output (exported by an earlier medclf)."""
        return self.predict_batch(x), None

    def predict_embedded_arrays(
        self, inputs: Sequence[np.ndarray], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict_embedded`` over normalized C x H x W inputs, in batches."""
        parts = [self.predict_embedded(x) for x in _batches(inputs, batch_size)]
        if not parts:
            return np.zeros((0, len(self.class_names)), np.float32), None
        embeddings = [e for _, e in parts]
        return (
            np.concatenate([p for p, _ in parts]),
            None if any(e is None for e in embeddings) else np.concatenate(embeddings),
        )

    def embeddings_arrays(
        self, inputs: Sequence[np.ndarray], batch_size: int = 32
    ) -> np.ndarray | None:
        """The monitoring embeddings of normalized C x H x W inputs, or None (see above)."""
        return self.predict_embedded_arrays(inputs, batch_size)[1]

    def _batched(self, fn, inputs: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        out = [fn(x) for x in _batches(inputs, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def logits_arrays(self, inputs: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        return self._batched(self.logits_batch, inputs, batch_size)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.prep.class_names

    def predict_arrays(self, inputs: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        return self._batched(self.predict_batch, inputs, batch_size)

    def fitted(
        self, source: str | Path | bytes, name: str | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """One image (path or file bytes) -> (C x H x W in [0, 1] at the model's channels and
        size, warnings such as an image too small to classify)."""
        decoded = decode_file(self.prep, source, name=name)
        label = name or ("uploaded file" if isinstance(source, bytes) else str(source))
        tiny = tiny_image_warning(label, decoded.width, decoded.height)
        return fit(self.prep, decoded.array), [tiny] if tiny else []

    def prepare(
        self, source: str | Path | bytes, name: str | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """One image -> (the model's normalized C x H x W input, warnings)."""
        chw, warnings = self.fitted(source, name)
        return self.prep.normalize_array(chw), warnings

    def predict_one(self, source: str | Path | bytes, name: str | None = None) -> dict[str, Any]:
        """The documented prediction record for one image (path or file bytes), with
        ``warnings`` when there are any."""
        x, warnings = self.prepare(source, name)
        record = self.describe(self.predict_batch(x[None])[0])
        if warnings:
            record["warnings"] = warnings
        return record

    def describe(self, probs: np.ndarray) -> dict[str, Any]:
        k = int(np.argmax(probs))
        return {
            "prediction": {
                "class": self.class_names[k],
                "class_index": k,
                "confidence": float(probs[k]),
            },
            "probabilities": {c: float(p) for c, p in zip(self.class_names, probs, strict=True)},
            "decision": self.decision.decide(probs, self.class_names),
        }

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "backend": self.backend,
            "temperature": self.decision.temperature,
            "operating_rule": self.decision.rule,
            "tta": self.decision.tta,
            "conformal": self.decision.conformal or None,
            **({"registered": self.registered} if self.registered else {}),
        }


def _batches(inputs: Sequence[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """C x H x W inputs stacked into float32 batches of at most ``batch_size``."""
    for i in range(0, len(inputs), batch_size):
        yield np.stack(inputs[i : i + batch_size]).astype(np.float32)


class TorchPredictor(Predictor):
    backend = "pytorch"

    def __init__(self, run_dir: str | Path, threads: int | None = None) -> None:
        import torch

        from medclf.models.checkpoint import (
            model_from_checkpoint,
            model_version,
            verified_best_digest,
        )
        from medclf.rundir import RunDir

        run = RunDir.open(run_dir)
        self.run = run
        self.weights_sha256 = verified_best_digest(run)
        model, _ = model_from_checkpoint(run.best_ckpt)
        # channels_last: oneDNN's CPU convolutions run 1.2-1.3x faster on NHWC (resnet18 at
        # 224 px, 2 threads: batch 1 45.8 -> 35.5 ms, batch 32 893 -> 739 ms; outputs within
        # 5e-8 of NCHW)
        self.model = model.to(memory_format=torch.channels_last)
        self.prep = Preprocessing.load_file(run.preprocessing)
        self.name = run.name
        self.version = model_version(self.weights_sha256)
        self.decision = load_run_decision(run, self.version, self.prep.class_names)
        self._release: dict[str, Any] | None = None
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._with_embedding: Any = None  # built when first asked (models.embedding)

    @property  # type: ignore[override]
    def release(self) -> dict[str, Any] | None:
        """Read when asked (/metadata), not at load: predict need not import pandas."""
        if self._release is None and self.run.split.is_file():
            from medclf.inference.release import test_evaluation, training_data

            self._release = {
                "training_data": training_data(self.run),
                "evaluation": test_evaluation(self.run, self.version),
            }
        return self._release

    def _logits(self, x: np.ndarray):
        torch = self._torch
        batch = torch.from_numpy(np.ascontiguousarray(x))
        with torch.inference_mode():
            return self.model(batch.contiguous(memory_format=torch.channels_last)).float()

    def _raw_logits(self, x: np.ndarray) -> np.ndarray:
        return self._logits(x).numpy()

    def predict_embedded(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        if self._with_embedding is None:
            from medclf.models.embedding import WithEmbedding

            self._with_embedding = WithEmbedding(self.model, self.prep.input_shape).eval()
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.inference_mode():
            logits, embedding = self._with_embedding(
                batch.contiguous(memory_format=torch.channels_last)
            )
        if self.decision.tta != "none":  # the views' logits; the embedding of the image itself
            return self.predict_batch(x), embedding.numpy()
        return self._calibrated(logits.float().numpy()), embedding.numpy()

    def explain(self, chw: np.ndarray, class_index: int) -> np.ndarray:
        """The Grad-CAM heat map (H x W in [0, 1]) of one fitted image for one class."""
        from medclf.inference.explain import gradcam_maps

        x = self.prep.normalize_array(chw)[None]
        return gradcam_maps(self.model, x, [class_index])[0]


class OnnxPredictor(Predictor):
    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        expected_file_sha256: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Load ``path``, refusing it unless its graph matches the digest embedded at export
        (and the file matches ``expected_file_sha256``, from ``metadata.json``, when given).
        The verified bytes are the ones handed to onnxruntime."""
        path = Path(path)
        if not path.is_file():
            raise MedclfError(f"model={path}: ONNX file not found")
        if path.stat().st_size >= MAX_ONNX_BYTES:
            raise MedclfError(
                f"model={path}: {path.stat().st_size / 2**30:.1f} GiB is larger than a "
                "single-file ONNX model can be (2 GiB); pass the file 'medclf export' wrote"
            )
        data = path.read_bytes()
        self.file_sha256 = hashlib.sha256(data).hexdigest()
        if expected_file_sha256 and expected_file_sha256 != self.file_sha256:
            raise MedclfError(
                f"model={path}: file sha256 {self.file_sha256[:12]}... differs from the "
                f"{expected_file_sha256[:12]}... recorded in metadata.json at export; the file "
                "was changed or damaged. Export it again with 'medclf export model=RUN'"
            )
        meta = verified_metadata(path, data)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedclfError(f"model={path}: not a loadable ONNX model ({first})") from exc
        self.prep = Preprocessing.from_dict(json.loads(meta[ONNX_META_PREPROCESSING]))
        # The graph's probabilities already divide by this temperature (see export).
        self.decision = (
            DecisionRecord.from_dict(json.loads(meta[ONNX_META_DECISION]))
            if ONNX_META_DECISION in meta
            else DecisionRecord()
        )
        if ONNX_META_RELEASE in meta:
            self.release = json.loads(meta[ONNX_META_RELEASE])
        # JSON text, parsed and checked only by the monitor (monitoring.profile)
        self.monitor_reference_text = meta.get(ONNX_META_MONITOR_REFERENCE)
        self.name = meta.get(ONNX_META_MODEL_NAME, path.stem)
        self.version = meta.get(ONNX_META_MODEL_VERSION, "unknown")
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if not {"logits", "probabilities"} <= set(outputs):
            raise MedclfError(
                f"model={path}: expected outputs 'logits' and 'probabilities', found {outputs}; "
                "export it with 'medclf export model=RUN'"
            )
        # exports before the monitoring embedding have no such output: monitored without it
        self.has_embedding = "embedding" in outputs

    def _raw_logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {self.input_name: x.astype(np.float32)})[0]

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        if self.decision.tta != "none":  # the views are averaged outside the graph
            return super().predict_batch(x)
        return self.session.run(["probabilities"], {self.input_name: x.astype(np.float32)})[0]

    def predict_embedded(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.has_embedding:
            return self.predict_batch(x), None
        feed = {self.input_name: x.astype(np.float32)}
        if self.decision.tta != "none":
            return self.predict_batch(x), self.session.run(["embedding"], feed)[0]
        probabilities, embedding = self.session.run(["probabilities", "embedding"], feed)
        return probabilities, embedding


def load_run_decision(run: Any, version: str, class_names: tuple[str, ...]) -> DecisionRecord:
    """The run's calibration record, unless it was fitted to other weights (then none)."""
    if not run.calibration.is_file():
        return DecisionRecord()
    record = DecisionRecord.load_file(run.calibration)
    fitted_to = record.fitted_on.get("model_version")
    if fitted_to and fitted_to != version:
        log.warning(
            "%s was fitted to weights %s, not the current best.ckpt (%s); ignoring it. "
            "Re-run 'medclf evaluate model=%s' to refit temperature and thresholds",
            run.calibration,
            fitted_to,
            version,
            run.root,
        )
        return DecisionRecord()
    record.check_classes(class_names, str(run.calibration))
    return record


def load_predictor(
    spec: str | Path, registered: dict[str, Any] | None = None, threads: int | None = None
) -> Predictor:
    """``spec`` is a run directory or an ``.onnx`` file; ``registered`` names the registered
    model version it was fetched for; ``threads``: the runtime's intra-op threads."""
    path = Path(spec).expanduser()
    predictor: Predictor
    if path.suffix.lower() == ".onnx":
        predictor = OnnxPredictor(path, recorded_file_sha256(path), threads=threads)
    elif path.is_dir():
        predictor = TorchPredictor(path, threads=threads)
    else:
        raise MedclfError(f"model={spec}: not a run folder or an .onnx file")
    predictor.registered = registered
    return predictor
