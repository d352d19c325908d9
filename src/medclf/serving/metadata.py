"""What ``GET /metadata`` says about the served model, and the OpenAPI description of the
upload routes (they read their multipart form themselves, inside an upload slot, so FastAPI
cannot derive it from their parameters)."""

from __future__ import annotations

from typing import Any

from medclf.data.io import RASTER_FORMATS
from medclf.serving.predictor import Predictor
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


def upload_body(field: str, many: bool) -> dict[str, Any]:
    """``openapi_extra`` for a route taking multipart ``field`` (one file or several)."""
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary} if many else binary
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
