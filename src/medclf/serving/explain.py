"""``POST /explain``: one image's prediction and a Grad-CAM overlay (PNG, base64) for the
predicted class or the one asked for (``class`` form field or query parameter, a name or an
index). Grad-CAM needs the PyTorch weights: a service of an ONNX file (or of a registered
version, which holds its ONNX file) answers 409 saying to serve the run folder. The map is
computed in the inference thread, between batches, and the prediction is audited like any.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException

from medclf.errors import MedclfError
from medclf.serving.metadata import UPLOAD_ERRORS, answers, upload_body
from medclf.serving.service import Prepared, refusal, sha256_of

WHY_NOT = (
    "this service runs an ONNX file, and Grad-CAM needs the PyTorch weights: serve the run "
    "folder (medclf serve model=RUN) to explain"
)


def _class_index(asked: str | None, classes: tuple[str, ...], predicted: int) -> int:
    if asked is None or asked == "":
        return predicted
    if asked in classes:
        return classes.index(asked)
    if asked.isdigit() and int(asked) < len(classes):
        return int(asked)
    raise HTTPException(400, f"class={asked} is not a class of the model ({', '.join(classes)})")


def _png_base64(image_chw: np.ndarray, heat: np.ndarray) -> str:
    from PIL import Image

    from medclf.inference.explain import overlay

    rgb = (np.clip(overlay(image_chw, heat), 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def add_routes(app: FastAPI, service: Any) -> None:
    predictor = service.predictor

    @app.post(
        "/explain",
        openapi_extra=upload_body("file"),
        responses=answers(*UPLOAD_ERRORS, 409),
    )
    async def explain(request: Request) -> dict:
        """One image -> its prediction and a Grad-CAM overlay of a class (PyTorch only)."""
        started = time.perf_counter()
        if not hasattr(predictor, "explain"):
            raise HTTPException(409, WHY_NOT)
        async with service.upload(request):
            one = "POST /explain takes one file"
            ((name, data),) = await service.files(request, "file", 1, one)
            try:
                chw, warnings = await service.run_decoder(predictor.fitted, data, name)
            except MedclfError as exc:
                raise refusal(exc) from None
        form = await request.form()
        asked = form.get("class") or request.query_params.get("class")
        prepared = Prepared(predictor.prep.normalize_array(chw), sha256_of(data), warnings)
        record = await service.predict(prepared)
        k = _class_index(
            None if asked is None else str(asked),
            predictor.class_names,
            record["prediction"]["class_index"],
        )
        heat = await service.batcher.exclusive(lambda: predictor.explain(chw, k))
        record["explanation"] = {
            "method": "grad-cam",
            "class": predictor.class_names[k],
            "overlay_png_base64": _png_base64(chw, heat),
            "size": list(heat.shape),
        }
        await service.record(request, [(0, prepared, record)], started)
        return service.answer(request, record, started)
