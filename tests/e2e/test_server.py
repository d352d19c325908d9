"""A real uvicorn server on 127.0.0.1, queried over HTTP with httpx."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import medclf, served

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_server(trained_run: Path) -> Iterator[str]:
    with served(trained_run) as url:
        yield url


@pytest.fixture(scope="module")
def onnx_server(trained_run: Path) -> Iterator[str]:
    with served(trained_run / "export" / "model.onnx") as url:
        yield url


def _test_image(run: Path) -> tuple[str, pd.Series]:
    preds = pd.read_csv(run / "eval/test/predictions.csv", dtype={"patient_id": str})
    row = preds.iloc[0]
    return row["path"], row


def test_health(run_server: str, trained_run: Path):
    body = httpx.get(f"{run_server}/health").json()
    assert body["status"] == "ok" and body["model"]["name"] == trained_run.name
    assert body["classes"] == ["cavity", "ground_glass", "nodule", "normal"]


def test_predict_response_schema(onnx_server: str, trained_run: Path):
    path, _ = _test_image(trained_run)
    with open(path, "rb") as fh:
        r = httpx.post(f"{onnx_server}/predict", files={"file": ("scan.png", fh, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "prediction",
        "probabilities",
        "decision",
        "model",
        "request_id",
        "latency_ms",
    }
    assert set(body["prediction"]) == {"class", "class_index", "confidence"}
    assert body["prediction"]["confidence"] == max(body["probabilities"].values())
    assert r.headers["x-request-id"] == body["request_id"]
    # both backends identify the same trained weights
    assert body["model"]["name"] == trained_run.name


def test_cli_predict_served_predict_and_evaluation_agree(
    run_server: str, onnx_server: str, trained_run: Path
):
    path, row = _test_image(trained_run)
    classes = ["cavity", "ground_glass", "nodule", "normal"]
    from_eval = [float(row[f"prob_{c}"]) for c in classes]
    cli = json.loads(medclf("predict", f"model={trained_run}", path, "--json", check=True).stdout)
    from_cli = [cli["results"][0]["probabilities"][c] for c in classes]
    # the operating-point decision fitted by evaluate is the one predict and serve return
    expected_decision = "" if pd.isna(row["decision"]) else row["decision"]
    assert (cli["results"][0]["decision"]["label"] or "") == expected_decision
    rule = json.loads((trained_run / "calibration.json").read_text())["rule"]  # youden|argmax
    served = []
    for url in (run_server, onnx_server):
        with open(path, "rb") as fh:
            body = httpx.post(f"{url}/predict", files={"file": ("x.png", fh)}).json()
        served.append([body["probabilities"][c] for c in classes])
        assert (body["decision"]["label"] or "") == expected_decision
        assert body["decision"]["rule"] == rule
    for other in (from_cli, *served):
        assert max(abs(a - b) for a, b in zip(from_eval, other, strict=True)) < 1e-5


def test_bad_uploads_are_4xx_never_500(run_server: str):
    r = httpx.post(f"{run_server}/predict", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and "not a readable image" in r.json()["detail"]
    r = httpx.post(f"{run_server}/predict", files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = httpx.post(f"{run_server}/predict", files={"other": ("x.png", b"abc")})
    assert r.status_code == 422
    r = httpx.post(f"{run_server}/predict")
    assert r.status_code == 422


def test_explain_overlays_the_predicted_or_asked_class(run_server: str, trained_run: Path):
    import base64
    import io

    from PIL import Image

    path, _ = _test_image(trained_run)
    with open(path, "rb") as fh:
        r = httpx.post(f"{run_server}/explain", files={"file": ("x.png", fh)}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    explained = body["explanation"]
    assert explained["method"] == "grad-cam" and explained["class"] == body["prediction"]["class"]
    png = Image.open(io.BytesIO(base64.b64decode(explained["overlay_png_base64"])))
    assert png.format == "PNG" and png.size == (32, 32) and png.mode == "RGB"
    with open(path, "rb") as fh:
        plain = httpx.post(f"{run_server}/predict", files={"file": ("x.png", fh)}).json()
    assert body["probabilities"] == plain["probabilities"]  # the same prediction as /predict
    with open(path, "rb") as fh:
        asked = httpx.post(
            f"{run_server}/explain", files={"file": fh}, data={"class": "normal"}, timeout=60
        ).json()
    assert asked["explanation"]["class"] == "normal"
    assert asked["explanation"]["overlay_png_base64"] != explained["overlay_png_base64"] or (
        body["prediction"]["class"] == "normal"
    )
    with open(path, "rb") as fh:
        bad = httpx.post(f"{run_server}/explain", files={"file": fh}, params={"class": "lung"})
    assert bad.status_code == 400 and "not a class of the model" in bad.json()["detail"]


def test_explain_on_an_onnx_service_says_what_to_serve(onnx_server: str, trained_run: Path):
    path, _ = _test_image(trained_run)
    with open(path, "rb") as fh:
        r = httpx.post(f"{onnx_server}/explain", files={"file": fh})
    assert r.status_code == 409 and "serve the run folder" in r.json()["detail"]


def test_the_openapi_document_says_what_each_route_answers(run_server: str):
    """Every status a route can answer is declared with its JSON error body, and a method a
    route does not take is 405 with the ``Allow`` header RFC 9110 requires."""
    doc = httpx.get(f"{run_server}/openapi.json").json()
    predict = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "401", "408", "413", "422", "503"} <= set(predict)
    error = predict["408"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ErrorBody")
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]["responses"]
    assert infer["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceError")
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    r = httpx.request("TRACE", f"{run_server}/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_schemathesis_conformance(run_server: str, tmp_path: Path):
    """Property-based requests from the service's own OpenAPI document, with every check
    schemathesis has (server errors, undeclared statuses and media types, response bodies
    against their schemas, methods not allowed, ...): any finding fails. Bounded: a fixed
    seed and 10 examples per operation; the exceptions are written in schemathesis.toml."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    proc = subprocess.run(
        [
            exe,
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{run_server}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache folder (.schemathesis/) goes there, not into the checkout
    )
    summary = proc.stdout[-3000:]
    assert proc.returncode == 0, summary
    assert re.search(r"\d+ generated, \d+ passed", summary), summary
