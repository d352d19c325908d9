"""What ``GET /metadata`` says about the served model, and the OpenAPI description of what
the routes take and answer: the upload routes' bodies (they read their multipart form
themselves, inside an upload slot, so FastAPI cannot derive it from their parameters) and
every status a route can answer, with its JSON error body (FastAPI declares only 200 and its
own 422, so clients generated from the document would not know the others)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from medclf.data.io import RASTER_FORMATS
from medclf.inference.predictor import Predictor
from medclf.serving.settings import ServeSettings

ACCEPTED = (*RASTER_FORMATS, "DICOM (with or without the 128-byte preamble)")


def metadata(predictor: Predictor, settings: ServeSettings) -> dict[str, Any]:
    """Classes, the input a client of the raw tensor API must send, the preprocessing and
    decision records, which model and version answer, its release record (training data, test
    metrics with intervals, gates) and the limits."""
    prep = predictor.prep
    release = predictor.release or {}
    return {
        "model": predictor.info(),
        "classes": list(predictor.class_names),
        "input": {
            "accepted_files": list(ACCEPTED),
            "tensor": {
                "name": "input",
                "datatype": "FP32",
                "shape": [-1, *prep.input_shape],
                "layout": "NCHW, normalized with the preprocessing record's mean and std",
            },
        },
        "preprocessing": prep.to_dict(),
        "decision": predictor.decision.to_dict(),
        "evaluation": release.get("evaluation"),
        "training_data": release.get("training_data"),
        "limits": settings.limits(),
    }


class ErrorBody(BaseModel):
    """Every error of the service's own routes."""

    detail: str
    request_id: str


class InferenceError(BaseModel):
    """Every error of the Open Inference Protocol routes (the protocol names it ``error``)."""

    error: str
    request_id: str


WHY = {
    400: "the file or tensor could not be read",
    401: "a missing or wrong API key (serve.api_key)",
    404: "no model of that name is served",
    408: "the body did not arrive in time (serve.body_timeout, serve.body_min_rate)",
    409: "not possible with this model",
    413: "a body, file count or image over its limit (serve.max_upload_mb, serve.max_files)",
    422: "a required part of the request is missing",
    503: "busy or not ready: retry later",
}


class Readiness(BaseModel):
    """``/ready`` and ``/v2/health/ready`` while the model warms up (503)."""

    ready: bool
    detail: str | None = None


def answers(*statuses: int, oip: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: its error ``statuses`` with the service's JSON error body,
    and ``oip`` statuses with the inference protocol's (the body limit, the key and the audit
    log answer the service's way on every route)."""
    declared: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": WHY[status]} for status in statuses
    }
    for status in oip:
        declared[status] = {"model": InferenceError, "description": WHY[status]}
    return declared


NOT_READY = {503: {"model": Readiness, "description": "the model is still warming up"}}
PLAIN_TEXT = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}


# what any upload route can answer besides 200
UPLOAD_ERRORS = (400, 401, 408, 413, 422, 503)


def upload_body(field: str, most: int = 1) -> dict[str, Any]:
    """``openapi_extra`` for a route taking multipart ``field``: one file, or 1 to ``most``."""
    binary = {"type": "string", "format": "binary"}
    schema = binary if most == 1 else {"type": "array", "items": binary, "minItems": 1}
    if most > 1:
        schema["maxItems"] = most
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {field: schema},
                        "required": [field],
                    }
                }
            },
        }
    }
