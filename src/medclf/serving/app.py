"""FastAPI service: ``POST /predict`` (multipart ``file``), ``POST /predict/batch`` (multipart
``files``), ``GET /health``, ``/ready``, ``/metadata`` and ``/metrics``, ``POST /explain``
(``serving.explain``) and the Open Inference Protocol v2 routes (``serving.oip``).

A request's way: ``RequestGuard`` (request id, body limit while it streams in) -> API key ->
an upload slot (``serve.max_concurrent_uploads``: the bodies in memory are bounded) -> the
multipart form -> decode and preprocess in a thread (``serve.decode_threads``, overlapping the
model) -> the slot is released -> ``MicroBatcher`` (one model call for up to
``serve.max_batch`` concurrent images) -> the prediction record. Every error is a JSON 4xx
with ``detail`` and ``request_id``, never a 500: an undecodable file 400, a body or image over
its limit 413, a body sent too slowly 408, a missing or wrong key 401, no free upload slot in
time 503. Each route's OpenAPI entry declares these (``serving.metadata``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from medclf.errors import MedclfError
from medclf.inference.predictor import Predictor
from medclf.serving import explain, oip
from medclf.serving.limits import KeyAndTiming, RequestGuard, json_error
from medclf.serving.metadata import (
    NOT_READY,
    PLAIN_TEXT,
    UPLOAD_ERRORS,
    answers,
    metadata,
    upload_body,
)
from medclf.serving.service import Prepared, Service, refusal
from medclf.serving.settings import ServeSettings
from medclf.serving.telemetry import CONTENT_TYPE
from medclf.version import __version__


def _error(request: Request, status: int, detail: str) -> JSONResponse:
    return json_error(request.scope, status, detail)


def create_app(predictor: Predictor, settings: ServeSettings) -> FastAPI:
    service = Service(predictor, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        warming = asyncio.create_task(service.warm_up())
        yield
        warming.cancel()
        await service.stop()

    # python-multipart logs a malformed body (already answered 400) as a bare line on stderr
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    docs = {} if settings.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(
        title="medclf prediction service",
        version=__version__,
        description=f"Classes: {', '.join(predictor.class_names)}",
        lifespan=lifespan,
        **docs,
    )
    app.state.service = service
    _handlers(app, service)
    _routes(app, service)
    oip.add_routes(app, service)
    explain.add_routes(app, service)
    # the metrics' route label: these paths, any other is one "unmatched" (clients cannot grow it)
    service.telemetry.paths = {getattr(r, "path", "") for r in app.routes}
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    # outermost: every response, refusals included, carries the request id
    app.add_middleware(
        RequestGuard,
        body=settings.body_limits(),
        too_large=settings.too_large,
        on_refused=lambda scope, status, kind: service.telemetry.refused(
            scope["path"], status, kind
        ),
    )
    return app


def _handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        service.telemetry.errors.labels(f"http_{exc.status_code}").inc()
        answer = _error(request, exc.status_code, str(exc.detail))
        answer.headers.update(exc.headers or {})  # a 405's Allow (RFC 9110)
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        service.telemetry.errors.labels("invalid_request").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(request, 422, f"{where}: {first.get('msg', 'invalid request')}")

    app.add_middleware(KeyAndTiming, service=service)


def _routes(app: FastAPI, service: Service) -> None:
    predictor, settings = service.predictor, service.settings

    # /health and /ready run on the event loop itself (async, nothing that blocks): a sync
    # route would wait for a worker thread, and at full load for the GIL, before it answers
    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers (no model work)."""
        return {"status": "ok", "model": predictor.info(), "classes": list(predictor.class_names)}

    @app.get("/ready", responses=NOT_READY)
    async def ready() -> JSONResponse:
        """Readiness: the model is loaded and has answered its warm-up batch."""
        if not service.ready:
            return JSONResponse({"ready": False, "detail": "warming up"}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metadata", responses=answers(401))
    def model_metadata() -> dict:
        """Classes, input, preprocessing, decision record, model and release, limits."""
        return metadata(predictor, settings)

    @app.get("/metrics", response_class=Response, responses={**PLAIN_TEXT, **answers(401)})
    def prometheus() -> Response:
        service.update_drift()
        return Response(service.telemetry.render(), media_type=CONTENT_TYPE)

    @app.post(
        "/predict",
        openapi_extra=upload_body("file"),
        responses=answers(*UPLOAD_ERRORS),
    )
    async def predict(request: Request) -> dict:
        """One image (PNG, JPEG, TIFF, BMP, GIF, WEBP, DICOM) -> its prediction record. A
        study id sent as ``X-Study-ID`` is kept in the audit log as a keyed pseudonym."""
        started = time.perf_counter()
        async with service.upload(request):
            one = "POST /predict takes one file; send several to /predict/batch"
            ((name, data),) = await service.files(request, "file", 1, one)
            try:
                prepared = await service.prepare(data, name)
            except MedclfError as exc:
                raise refusal(exc) from None
        record = await service.predict(prepared)
        await service.record(request, [(0, prepared, record)], started)
        return service.answer(request, record, started)

    @app.post(
        "/predict/batch",
        openapi_extra=upload_body("files", most=settings.max_files),
        responses=answers(*UPLOAD_ERRORS),
    )
    async def predict_batch(request: Request) -> dict:
        """Several images -> one result per file, in order: a prediction or its own error."""
        started = time.perf_counter()
        async with service.upload(request):
            most = f"the limit is serve.max_files={settings.max_files}"
            files = await service.files(request, "files", settings.max_files, most)
            prepared = await asyncio.gather(
                *(service.prepare(data, name) for name, data in files), return_exceptions=True
            )
        results = await asyncio.gather(*(_one(service, p) for p in prepared))
        answered = [
            (i, p, r)
            for i, (p, r) in enumerate(zip(prepared, results, strict=True))
            if "error" not in r
        ]
        await service.record(request, answered, started)
        for result, (name, _) in zip(results, files, strict=True):
            result["filename"] = name
        return service.answer(request, {"results": results}, started)


async def _one(service: Service, prepared: Prepared | BaseException) -> dict[str, Any]:
    """One file of a batch: its prediction, or its own error (never the batch's)."""
    if isinstance(prepared, MedclfError):
        refused = refusal(prepared)
        kind = "too_large" if refused.status_code == 413 else "unreadable"
        service.telemetry.errors.labels(kind).inc()
        return {"error": {"status": refused.status_code, "detail": refused.detail}}
    if isinstance(prepared, BaseException):
        raise prepared
    return await service.predict(prepared)


WORKER_ENV = "MEDCLF_SERVE_WORKER"  # JSON: model path, registered version, settings


def from_environment() -> FastAPI:
    """The app of one worker process of ``serve.workers`` (uvicorn's factory): the model and
    settings ``medclf serve`` checked and handed over in the environment."""
    import json

    from medclf.inference.predictor import load_predictor

    spec = json.loads(os.environ[WORKER_ENV])
    settings = ServeSettings.from_json(spec["settings"])
    predictor = load_predictor(spec["model"], spec["registered"], threads=settings.threads)
    return create_app(predictor, settings)
