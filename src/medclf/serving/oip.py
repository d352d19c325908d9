"""The Open Inference Protocol v2 (KServe / Triton HTTP data plane), so existing clients work
unchanged: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``,
``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.

``infer`` takes the already preprocessed tensor (``input``: FP32, ``[N, C, H, W]``, normalized
as ``/metadata`` describes; JSON ``data`` in row-major order) and returns ``probabilities``
(``[N, classes]``, calibrated, as ``/predict`` reports them). Its images go
through the same micro-batcher as uploads. Errors follow the protocol: ``{"error": text}``
(with the request id), 400 for a bad tensor, 404 for another model name. The tensor's size is
bounded before it is built: at most ``serve.max_files`` images, and the body within
``serve.max_upload_mb`` like any request.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse

from medclf.serving.limits import request_id_of
from medclf.serving.metadata import NOT_READY, answers
from medclf.version import __version__

INPUT = "input"
OUTPUTS = ("probabilities",)


# the protocol's JSON request, for the OpenAPI document (the route reads the body itself). It
# cannot say that ``data`` holds N x C x H x W numbers: a schema-valid body can still be 400.
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "enum": [INPUT]},
        "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        "datatype": {"type": "string", "enum": ["FP32"]},
        "data": {"type": "array", "items": {"type": "number"}, "minItems": 1},
    },
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1, "maxItems": 1},
                    },
                }
            }
        },
    }
}


def model_name(predictor: Any) -> str:
    """The name clients address: the registered name when served from the registry."""
    return (predictor.registered or {}).get("name") or predictor.name


def _error(request: Request, status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text, "request_id": request_id_of(request.scope)}, status)


class TensorError(ValueError):
    pass


def _tensor(body: Any, prep: Any, most: int) -> np.ndarray:
    """The request's ``input`` tensor, checked against the model's input before it is built."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise TensorError(f"expected one input named '{INPUT}'")
    spec = inputs[0]
    want = list(prep.input_shape)
    shape = spec.get("shape")
    if spec.get("name") != INPUT or spec.get("datatype") != "FP32":
        raise TensorError(f"the input must be named '{INPUT}' with datatype FP32")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1:] == want):
        raise TensorError(f"input shape {shape} is not [N, {', '.join(map(str, want))}]")
    if not isinstance(shape[0], int) or not 1 <= shape[0] <= most:
        raise TensorError(f"batch size {shape[0]} is not between 1 and {most} (serve.max_files)")
    data = spec.get("data")
    if not isinstance(data, list):
        raise TensorError("the input's data must be a JSON list of numbers")
    try:
        x = np.asarray(data, dtype=np.float32).reshape(shape)
    except (ValueError, TypeError):
        raise TensorError(f"the input's data does not hold {int(np.prod(shape))} numbers") from None
    if not np.isfinite(x).all():
        raise TensorError("the input holds NaN or infinite values")
    return x


def add_routes(app: FastAPI, service: Any) -> None:
    predictor = service.predictor
    name = model_name(predictor)

    def served_name() -> Any:  # the {model} path parameter: the one name served (else 404)
        return Path(description="the served model's name", json_schema_extra={"enum": [name]})

    def described() -> dict[str, Any]:
        prep = predictor.prep
        classes = len(predictor.class_names)
        shape = [-1, *prep.input_shape]
        return {
            "name": name,
            "versions": [str((predictor.registered or {}).get("version", predictor.version))],
            "platform": f"medclf-{predictor.backend}",
            "inputs": [{"name": INPUT, "datatype": "FP32", "shape": shape}],
            "outputs": [{"name": o, "datatype": "FP32", "shape": [-1, classes]} for o in OUTPUTS],
        }

    @app.get("/v2", responses=answers(401))
    def server_metadata() -> dict:
        return {"name": "medclf", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", responses=NOT_READY)
    def ready() -> JSONResponse:
        return JSONResponse({"ready": service.ready}, 200 if service.ready else 503)

    @app.get("/v2/models/{model}", responses=answers(401, 422, oip=(404,)))
    def metadata(request: Request, model: str = served_name()):
        return described() if model == name else _error(request, 404, f"no model '{model}'")

    @app.get("/v2/models/{model}/ready", responses={**answers(401, 422, oip=(404,)), **NOT_READY})
    def model_ready(request: Request, model: str = served_name()):
        if model != name:
            return _error(request, 404, f"no model '{model}'")
        return JSONResponse({"name": name, "ready": service.ready}, 200 if service.ready else 503)

    @app.post(
        "/v2/models/{model}/infer",
        openapi_extra=INFER_BODY,
        responses=answers(401, 408, 413, 422, 503, oip=(400, 404)),
    )
    async def infer(request: Request, model: str = served_name()):
        if model != name:
            return _error(request, 404, f"no model '{model}'")
        try:
            body = await request.json()
            x = _tensor(body, predictor.prep, service.settings.max_files)
        except (TensorError, ValueError) as exc:  # ValueError: not JSON at all
            text = str(exc) if isinstance(exc, TensorError) else "the body is not JSON"
            return _error(request, 400, text)
        started = time.perf_counter()
        probs, answered = await service.infer_rows(x)
        await service.record(request, answered, started)
        outputs = [
            {
                "name": OUTPUTS[0],
                "datatype": "FP32",
                "shape": list(probs.shape),
                "data": probs.ravel().tolist(),
            }
        ]
        answer = {"model_name": name, "outputs": outputs}
        if isinstance(body.get("id"), str):
            answer["id"] = body["id"]
        return answer
