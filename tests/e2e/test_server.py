"""A real uvicorn server on 127.0.0.1, queried over HTTP with httpx."""

from __future__ import annotations

import json
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
    served = []
    for url in (run_server, onnx_server):
        with open(path, "rb") as fh:
            body = httpx.post(f"{url}/predict", files={"file": ("x.png", fh)}).json()
        served.append([body["probabilities"][c] for c in classes])
        assert (body["decision"]["label"] or "") == expected_decision
        assert body["decision"]["rule"] == "youden"
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
