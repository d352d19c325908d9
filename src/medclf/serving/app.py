"""FastAPI service: ``POST /predict`` (multipart field ``file``) and ``GET /health``.

Preprocessing comes from the model's own record; inference runs in a worker thread so the
event loop keeps answering. Bad uploads are 400/413/422 with a JSON ``detail``, never 500:
413 for a body over 64 MiB or an image whose header claims more pixels than the model's
record allows (checked before decoding).
"""

from __future__ import annotations

import uuid

import anyio
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse

from medclf import __version__
from medclf.data.io import ImageTooLargeError
from medclf.errors import MedclfError
from medclf.serving.predictor import Predictor

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


def create_app(predictor: Predictor) -> FastAPI:
    app = FastAPI(
        title="medclf prediction service",
        version=__version__,
        description=f"Classes: {', '.join(predictor.class_names)}",
    )
    # One inference at a time per process: the model's own intra-op threads use the cores,
    # and concurrent calls into one PyTorch module would only contend for them.
    limiter = anyio.CapacityLimiter(1)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.info(), "classes": list(predictor.class_names)}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> JSONResponse:
        request_id = uuid.uuid4().hex
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        name = file.filename or "upload"
        try:
            result = await anyio.to_thread.run_sync(
                predictor.predict_one, data, name, limiter=limiter
            )
        except MedclfError as exc:
            return JSONResponse(
                status_code=413 if isinstance(exc, ImageTooLargeError) else 400,
                content={"detail": str(exc), "request_id": request_id},
                headers={"X-Request-ID": request_id},
            )
        body = {
            **result,
            "model": {"name": predictor.name, "version": predictor.version},
            "request_id": request_id,
        }
        return JSONResponse(body, headers={"X-Request-ID": request_id})

    return app
