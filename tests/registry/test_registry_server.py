"""The registry against a real `mlflow server` process on 127.0.0.1 (sqlite backend, a local
artifact root it serves itself): register, promote, fetch models:/ over HTTP."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _free_port, medclf, running_server
from tests.registry.test_registry import NAME, _release, _test_image

# a minute and a half on 2 cores (an mlflow server start, a release, a registration); CI runs
# it with make test-heavy
pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = _free_port()
    cmd = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        (tmp_path / "artifacts").as_uri(),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with running_server(cmd, url, timeout=120):
        yield url


def test_register_and_fetch_through_a_tracking_server(
    trained_run: Path, tmp_path: Path, mlflow_server: str
):
    run = _release(trained_run, tmp_path / "good", gates_pass=True)
    store = [f"mlflow.tracking_uri={mlflow_server}", "runs_root=runs"]
    started = time.monotonic()
    medclf(
        "register", str(run), f"name={NAME}", "alias=production", *store, cwd=tmp_path, check=True
    )
    register_s = time.monotonic() - started
    image = _test_image(run)
    out = medclf(
        "predict",
        f"model=models:/{NAME}@production",
        image,
        *store,
        "--json",
        cwd=tmp_path,
        check=True,
    )
    local = medclf(
        "predict",
        f"model={run / 'export' / 'model.onnx'}",
        image,
        "--json",
        cwd=tmp_path,
        check=True,
    )
    got = json.loads(out.stdout)["results"][0]["probabilities"]
    assert got == json.loads(local.stdout)["results"][0]["probabilities"]
    assert any((tmp_path / "artifacts").rglob("model.onnx"))  # stored by the server
    assert register_s < 120
