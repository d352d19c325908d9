"""What the routes share, and a prediction's way through it: an upload's files (read inside an
upload slot) -> decode and preprocess in a decoder thread -> the micro-batcher -> the
prediction record -> the audit log (committed before the route answers) -> metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from medclf import embedding
from medclf.data.pseudonym import Pseudonymizer
from medclf.errors import MedclfError
from medclf.image_settings import ImageTooLargeError
from medclf.inference.predictor import Predictor
from medclf.monitoring.features import intensity_features
from medclf.monitoring.live import LiveWindow
from medclf.serving.audit import AuditLog, AuditRow, row_for
from medclf.serving.batcher import MicroBatcher
from medclf.serving.limits import UploadSlots, request_id_of
from medclf.serving.settings import ServeSettings
from medclf.serving.telemetry import Telemetry

log = logging.getLogger("medclf")
STUDY_HEADER = "x-study-id"
TRIM_AFTER_BYTES = 4 * 2**20  # an upload this large is followed by trim_heap()


def trim_heap() -> None:
    """Give a large upload's memory back to the operating system: collect the reference
    cycles that still hold its bytes (a refused file's exception and traceback), then ask
    glibc to return freed arenas (a no-op where malloc_trim does not exist). Without this,
    ten concurrent 60 MiB uploads left the process about 600 MB larger for good."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _json(features: np.ndarray | None) -> str | None:
    return None if features is None else json.dumps([round(float(v), 6) for v in features])


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refusal(exc: MedclfError) -> HTTPException:
    """The 4xx for a file the decoder refused. The decoder's traceback is dropped: its frames
    hold the upload's bytes, and would keep them until the next garbage collection."""
    exc.__traceback__ = None
    status = 413 if isinstance(exc, ImageTooLargeError) else 400
    return HTTPException(status, str(exc))


def _live_window(predictor: Predictor) -> LiveWindow | None:
    """The latest images against the model's reference profile; None (gauges at 0) for a
    model exported without one."""
    from medclf.monitoring.monitor import reference_of

    try:
        return LiveWindow(reference_of(predictor))
    except MedclfError as exc:
        log.info("drift gauges off: %s", exc)
        return None


@dataclass
class Prepared:
    """One image ready for the model."""

    x: np.ndarray  # C x H x W, normalized
    sha256: str  # of the uploaded bytes (of the tensor, for the raw tensor route)
    warnings: list[str] = field(default_factory=list)
    preprocess_s: float | None = None
    # intensity features for input-drift monitoring (None for an already normalized tensor)
    features: np.ndarray | None = None
    embedding: np.ndarray | None = None  # the model's monitoring embedding, once predicted


class Service:
    def __init__(self, predictor: Predictor, settings: ServeSettings) -> None:
        self.predictor = predictor
        self.settings = settings
        self.telemetry = Telemetry(predictor.info())
        self.batcher = MicroBatcher(
            predictor.predict_embedded,
            settings.max_batch,
            settings.max_wait_ms,
            on_batch=self.telemetry.batch,
            coming=lambda: self.preparing,
        )
        self.preparing = 0  # uploads being read or decoded: images the batcher may wait for
        self.slots = UploadSlots(settings.max_concurrent_uploads, settings.upload_wait_s)
        self.decoders = anyio.CapacityLimiter(settings.decode_threads)
        # opened here, so a bad URL is one line from 'medclf serve' before the port opens
        self.audit = AuditLog(settings.audit_url) if settings.audit_url else None
        # reads (or creates) the project's key only when a study id first arrives
        self.pseudonymize = Pseudonymizer(settings.pseudonym_key_file)
        self.live = _live_window(predictor)  # the /metrics drift gauges' latest images
        self.telemetry.drift(None)
        self.ready = False

    async def start(self) -> None:
        await self.batcher.start()
        if self.audit:
            await self.audit.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self.audit:
            await self.audit.stop()

    async def warm_up(self) -> None:
        """One batch of the model's input shape through the batcher: the first real request
        does not pay for the runtime's lazy initialization. /ready answers 503 until then."""
        await self.batcher.submit(np.zeros(self.predictor.prep.input_shape, np.float32))
        self.ready = True

    @contextlib.asynccontextmanager
    async def upload(self, request: Request):
        """An upload slot for reading and decoding the request's files; once it is released,
        the memory of a large upload is given back."""
        try:
            async with self.slots:
                yield
        finally:  # refused uploads too: an unreadable 60 MiB file was held all the same
            if request.scope.get("state", {}).get("upload_bytes", 0) > TRIM_AFTER_BYTES:
                await anyio.to_thread.run_sync(trim_heap)

    async def files(
        self, request: Request, field: str, most: int, limit: str
    ) -> list[tuple[str, bytes]]:
        """The uploaded files of a multipart ``field`` (at most ``most``, ``limit`` says why),
        read into memory."""
        self.preparing += 1
        try:
            files = await self._files(request, field, most, limit)
        finally:
            self.preparing -= 1
        request.scope.setdefault("state", {})["upload_bytes"] = sum(len(d) for _, d in files)
        return files

    async def _files(
        self, request: Request, field: str, most: int, limit: str
    ) -> list[tuple[str, bytes]]:
        try:
            form = await request.form(max_files=most, max_fields=most + 8)
        except HTTPException as exc:
            if str(exc.detail).startswith("Too many files"):
                raise HTTPException(
                    413, f"more than {most} file(s) in one request: {limit}"
                ) from None
            raise
        uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
        if not uploads:
            raise HTTPException(422, f"no file in the multipart field '{field}'")
        return [(u.filename or "upload", await u.read()) for u in uploads]

    async def run_decoder(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in one of the decoder threads (``serve.decode_threads``)."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.decoders)

    async def prepare(self, data: bytes, name: str) -> Prepared:
        self.preparing += 1
        try:
            return await self._prepare(data, name)
        finally:
            self.preparing -= 1

    async def _prepare(self, data: bytes, name: str) -> Prepared:
        def work() -> Prepared:
            started = time.perf_counter()
            chw, warnings = self.predictor.fitted(data, name)
            features = intensity_features(chw)
            x = self.predictor.prep.normalize_array(chw)
            took = time.perf_counter() - started
            return Prepared(x, sha256_of(data), warnings, took, features)

        return await anyio.to_thread.run_sync(work, limiter=self.decoders)

    async def predict(self, prepared: Prepared) -> dict[str, Any]:
        """The prediction record of one prepared image (its warnings included)."""
        answer = await self.batcher.submit(prepared.x)
        prepared.embedding = answer.embedding
        record = self.predictor.describe(answer.probabilities)
        decision = record["decision"]
        stages = {"queue": answer.queue_s, "inference": answer.inference_s}
        if prepared.preprocess_s is not None:
            stages["preprocess"] = prepared.preprocess_s
        self.telemetry.predicted(
            record["prediction"]["class"],
            "refer" if decision.get("refer") else (decision.get("label") or "none"),
            stages,
        )
        if prepared.warnings:
            record["warnings"] = prepared.warnings
        if self.live is not None:
            self.live.add(prepared.features, answer.probabilities)
        return record

    def update_drift(self) -> None:
        """The drift gauges, from the latest images (called when /metrics is scraped)."""
        if self.live is not None:
            self.telemetry.drift(self.live.values())

    async def record(
        self, request: Request, answered: list[tuple[int, Prepared, dict]], started: float
    ) -> None:
        """Commit one audit row per answered image before the route answers; 503 when the
        log cannot take them (the answer is withheld, never given unrecorded)."""
        if not self.audit or not answered:
            return
        study = request.headers.get(STUDY_HEADER, "").strip()
        common = {
            "request_id": request_id_of(request.scope),
            "route": request.scope["path"][:64],
            "latency_ms": (time.perf_counter() - started) * 1000,
            "study": self.pseudonymize(study[:256]) if study else None,
        }
        model = self.predictor.info()
        rows: list[AuditRow] = [
            row_for(
                record,
                model,
                item=i,
                input_sha256=p.sha256,
                features=_json(p.features),
                embedding=embedding.encode(p.embedding),
                **common,
            )
            for i, p, record in answered
        ]
        try:
            await self.audit.record(rows)
        except Exception as exc:  # the database's own errors
            self.telemetry.errors.labels("audit").inc()
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise HTTPException(
                503, f"the audit log could not record this prediction ({first}); retry later"
            ) from None

    async def infer_rows(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
        """Already preprocessed images (N x C x H x W) -> N x classes probabilities, and the
        answered images for the audit log."""
        prepared = [Prepared(row, sha256_of(row.tobytes())) for row in x]
        records = await asyncio.gather(*(self.predict(p) for p in prepared))
        probs = np.stack([list(r["probabilities"].values()) for r in records]).astype(np.float32)
        return probs, list(zip(range(len(x)), prepared, records, strict=True))

    def answer(self, request: Request, body: dict[str, Any], started: float) -> dict[str, Any]:
        """A route's answer: its body, the model that gave it, the request id, the latency."""
        info = self.predictor.info()
        model = {k: info[k] for k in ("name", "version", "registered") if k in info}
        return {
            **body,
            "model": model,
            "request_id": request_id_of(request.scope),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
