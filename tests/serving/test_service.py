"""The service's routes, limits, micro-batching, key and metrics, on a real uvicorn server on
127.0.0.1 (``medclf serve`` in a subprocess) serving the tiny run's ONNX file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import _free_port, medclf, served

pytestmark = pytest.mark.slow
KEY = "test-key-0123"
AUTH = {"X-API-Key": KEY}
SETTINGS = (
    "serve.max_upload_mb=1",
    "serve.max_files=3",
    "serve.max_batch=8",
    "serve.max_wait_ms=50",  # wide, so that concurrent requests surely share a batch
    "serve.max_concurrent_uploads=2",
    "serve.upload_wait_s=1",
    f"serve.api_key={KEY}",
    "serve.cors_origins=[http://viewer.example]",
    "serve.docs=false",
)


@pytest.fixture(scope="module")
def audit_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audit") / "audit.db"


@pytest.fixture(scope="module")
def server(trained_run: Path, audit_db: Path) -> Iterator[str]:
    extra = (*SETTINGS, f"serve.audit_url=sqlite:///{audit_db}")
    with served(trained_run / "export" / "model.onnx", extra=extra) as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready").status_code != 200:  # warm-up batch
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        yield url


def _images(run: Path, n: int) -> list[Path]:
    table = pd.read_csv(run / "split.csv")
    return [Path(p) for p in table.loc[table["split"] == "test", "path"].iloc[:n]]


def _predict(url: str, image: Path) -> dict:
    r = httpx.post(f"{url}/predict", files={"file": image.open("rb")}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", headers=AUTH).text


def _value(text: str, series: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(series))


def test_probes_and_metadata(server: str, trained_run: Path):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"  # probes need no key
    assert httpx.get(f"{server}/ready").json() == {"ready": True}
    assert httpx.get(f"{server}/metadata").status_code == 401
    meta = httpx.get(f"{server}/metadata", headers=AUTH).json()
    assert meta["classes"] == ["cavity", "ground_glass", "nodule", "normal"]
    assert meta["input"]["tensor"]["shape"] == [-1, 1, 32, 32]
    assert meta["model"]["name"] == trained_run.name
    # the rule that decides, as evaluate recorded it (youden thresholds, or argmax)
    recorded = json.loads((trained_run / "calibration.json").read_text())
    assert meta["decision"]["rule"] == recorded["rule"] in ("youden", "argmax")
    # the release record embedded at export: test metrics with intervals, and the gates
    accuracy = meta["evaluation"]["metrics"]["accuracy"]
    assert accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"]
    assert set(meta["evaluation"]["gates"]) == {"passed", "failed"}
    assert meta["limits"]["max_files"] == 3
    assert httpx.get(f"{server}/docs", headers=AUTH).status_code == 404  # serve.docs=false
    assert httpx.get(f"{server}/openapi.json", headers=AUTH).status_code == 404


def test_batch_answers_each_file_in_order_one_bad_file_fails_alone(server: str, trained_run: Path):
    a, b = _images(trained_run, 2)
    files = [("files", a.open("rb")), ("files", ("notes.txt", b"hello")), ("files", b.open("rb"))]
    r = httpx.post(f"{server}/predict/batch", files=files, headers=AUTH)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == [a.name, "notes.txt", b.name]
    assert results[1]["error"]["status"] == 400
    assert "not a readable image" in results[1]["error"]["detail"]
    for result, image in ((results[0], a), (results[2], b)):
        single = _predict(server, image)
        assert result["probabilities"] == pytest.approx(single["probabilities"], abs=1e-6)
        assert result["decision"] == single["decision"]
    too_many = [("files", a.open("rb")) for _ in range(4)]
    r = httpx.post(f"{server}/predict/batch", files=too_many, headers=AUTH)
    assert r.status_code == 413 and "serve.max_files=3" in r.json()["detail"]


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(
    server: str, trained_run: Path
):
    images = _images(trained_run, 4) * 3
    alone = {p: _predict(server, p)["probabilities"] for p in set(images)}
    before = _metrics(server)

    async def burst() -> list[dict]:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
            calls = [
                client.post(f"{server}/predict", files={"file": p.read_bytes()}) for p in images
            ]
            return [r.json() for r in await asyncio.gather(*calls)]

    answers = asyncio.run(burst())
    for image, answer in zip(images, answers, strict=True):
        assert answer["probabilities"] == pytest.approx(alone[image], abs=1e-6)
        assert answer["latency_ms"] > 0
    after = _metrics(server)
    calls = _value(after, "medclf_batch_size_count") - _value(before, "medclf_batch_size_count")
    batched = _value(after, "medclf_batch_size_sum") - _value(before, "medclf_batch_size_sum")
    assert batched == len(images) and calls < len(images)  # some calls held several images
    for name in ('medclf_stage_seconds_count{stage="queue"}', "medclf_model_info{"):
        assert name in after
    assert _value(after, 'medclf_requests_total{route="/predict",status="200"}') >= len(images)


def test_body_limit_is_enforced_while_the_upload_streams_in(server: str):
    declared = httpx.post(f"{server}/predict", files={"file": b"0" * (2 * 2**20)}, headers=AUTH)
    assert declared.status_code == 413 and "serve.max_upload_mb (1 MiB)" in declared.text
    assert declared.headers["x-request-id"] == declared.json()["request_id"]
    # answered before the app, and still counted
    metrics = _metrics(server)
    assert _value(metrics, 'medclf_requests_total{route="/predict",status="413"}') >= 1
    assert _value(metrics, 'medclf_errors_total{kind="too_large"}') >= 1
    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        nonlocal sent
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(64):
            sent += 2**20
            yield b"\0" * 2**20
        yield b"\r\n--B--\r\n"

    headers = {**AUTH, "content-type": "multipart/form-data; boundary=B"}
    try:
        r = httpx.post(f"{server}/predict", content=chunks(), headers=headers, timeout=30)
        assert r.status_code == 413 and "serve.max_upload_mb" in r.json()["detail"]
    except httpx.TransportError:
        pass  # the server may close the connection at the limit, before the client finished
    assert httpx.get(f"{server}/health").status_code == 200


def test_uploads_beyond_the_concurrent_budget_wait_then_get_503(server: str, trained_run: Path):
    """Two slow uploads hold both slots (serve.max_concurrent_uploads=2); a third waits
    serve.upload_wait_s and is told to retry; once they end, uploads are served again."""
    host, port = server.removeprefix("http://").split(":")
    holders = []
    for _ in range(2):
        s = socket.create_connection((host, int(port)))
        s.sendall(
            (
                f"POST /predict HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n"
                "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 500000\r\n\r\n"
                '--B\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
            ).encode()
        )
        holders.append(s)
    time.sleep(0.5)
    (image,) = _images(trained_run, 1)
    r = httpx.post(f"{server}/predict", files={"file": image.open("rb")}, headers=AUTH)
    assert r.status_code == 503 and "serve.max_concurrent_uploads" in r.json()["detail"]
    for s in holders:
        s.close()
    time.sleep(0.5)
    assert _predict(server, image)["prediction"]["class"]


def test_key_request_id_and_cors(server: str, trained_run: Path):
    (image,) = _images(trained_run, 1)
    r = httpx.post(f"{server}/predict", files={"file": image.open("rb")})
    assert r.status_code == 401 and r.json()["request_id"] == r.headers["x-request-id"]
    r = httpx.post(
        f"{server}/predict",
        files={"file": image.open("rb")},
        headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "study-42.a"},
    )
    assert r.status_code == 200 and r.json()["request_id"] == "study-42.a"
    assert r.headers["x-request-id"] == "study-42.a"
    odd = httpx.get(f"{server}/health", headers={"X-Request-ID": "no spaces; please"})
    assert odd.headers["x-request-id"] != "no spaces; please"  # replaced, never echoed
    preflight = httpx.options(
        f"{server}/predict",
        headers={
            "Origin": "http://viewer.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "http://viewer.example"
    other = httpx.get(f"{server}/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert _value(_metrics(server), 'medclf_errors_total{kind="unauthorized"}') >= 1


def test_open_inference_protocol_v2_with_its_documented_json(server: str, trained_run: Path):
    from medclf.inference.predictor import load_predictor

    onnx = load_predictor(trained_run / "export" / "model.onnx")
    name = trained_run.name
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}  # a probe: no key
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200
    meta = httpx.get(f"{server}/v2/models/{name}", headers=AUTH).json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 32, 32]}]
    assert meta["outputs"][0]["shape"] == [-1, 4]
    assert httpx.get(f"{server}/v2/models/{name}/ready", headers=AUTH).json()["ready"] is True
    images = _images(trained_run, 2)
    x = np.stack([onnx.prepare(p)[0] for p in images])  # the client preprocesses
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ],
    }
    r = httpx.post(f"{server}/v2/models/{name}/infer", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-1" and out["model_name"] == name
    (probs,) = out["outputs"]
    assert probs["name"] == "probabilities" and probs["shape"] == [2, 4]
    rows = np.asarray(probs["data"]).reshape(2, 4)
    for row, image in zip(rows, images, strict=True):
        expected = list(_predict(server, image)["probabilities"].values())
        assert row.tolist() == pytest.approx(expected, abs=1e-6)
    wrong = {**body, "inputs": [{**body["inputs"][0], "shape": [2, 3, 32, 32]}]}
    r = httpx.post(f"{server}/v2/models/{name}/infer", json=wrong, headers=AUTH)
    assert r.status_code == 400 and "is not [N, 1, 32, 32]" in r.json()["error"]
    r = httpx.post(f"{server}/v2/models/other/infer", json=body, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "no model 'other'"
    r = httpx.post(f"{server}/v2/models/{name}/infer", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"] == "the body is not JSON"


def test_every_answered_prediction_is_in_the_audit_log_and_no_identifier_is(
    server: str, trained_run: Path, audit_db: Path, tmp_path: Path
):
    a, b = _images(trained_run, 2)
    study = {**AUTH, "X-Study-ID": "MRN12345"}
    one = httpx.post(f"{server}/predict", files={"file": a.open("rb")}, headers=study).json()
    files = [("files", a.open("rb")), ("files", ("notes.txt", b"hello")), ("files", b.open("rb"))]
    batch = httpx.post(f"{server}/predict/batch", files=files, headers=AUTH).json()
    out = tmp_path / "audit.csv"
    medclf(
        "audit", "export", f"serve.audit_url=sqlite:///{audit_db}", "--out", str(out), check=True
    )
    log = pd.read_csv(out, dtype=str, keep_default_na=False)
    mine = log[log["request_id"] == one["request_id"]]
    assert len(mine) == 1 and mine["route"].item() == "/predict"
    assert json.loads(mine["probabilities"].item()) == pytest.approx(one["probabilities"])
    assert mine["input_sha256"].item() == hashlib.sha256(a.read_bytes()).hexdigest()
    assert mine["model_version"].item() == one["model"]["version"]
    # the study id only as a keyed pseudonym; no file name anywhere
    assert re.fullmatch(r"p[0-9a-f]{15}", mine["study"].item())
    text = out.read_text()
    assert "MRN12345" not in text and a.name not in text and "notes.txt" not in text
    rows = log[log["request_id"] == batch["request_id"]]
    assert rows["item"].tolist() == ["0", "2"]  # the unreadable file answered nothing
    since = medclf(
        "audit",
        "export",
        f"serve.audit_url=sqlite:///{audit_db}",
        "--since",
        "2099-01-01",
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "none.parquet"),
        check=True,
    )
    assert "exported 0 prediction(s)" in since.stdout
    assert pd.read_parquet(tmp_path / "none.parquet").empty


def test_kill_9_under_load_loses_no_answered_prediction(trained_run: Path, tmp_path: Path):
    """Every request answered 200 before the server was killed (SIGKILL, no shutdown) is in
    the audit log afterwards, and the log opens cleanly."""
    db = tmp_path / "audit.db"
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "medclf",
        "serve",
        f"model={trained_run / 'export' / 'model.onnx'}",
        f"port={port}",
        f"serve.audit_url=sqlite:///{db}",
    ]
    url = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    (image,) = _images(trained_run, 1)
    data = image.read_bytes()
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url)

        async def client(stop_at: float) -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                while time.monotonic() < stop_at:
                    try:
                        r = await http.post(f"{url}/predict", files={"file": data})
                    except httpx.TransportError:
                        return  # the server is gone
                    if r.status_code == 200:
                        answered.append(r.json()["request_id"])

        async def load() -> None:
            stop_at = time.monotonic() + 6
            tasks = [asyncio.create_task(client(stop_at)) for _ in range(6)]  # 6 users
            await asyncio.sleep(1.5)
            proc.send_signal(signal.SIGKILL)  # mid-load
            await asyncio.gather(*tasks)

        asyncio.run(load())
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert len(answered) > 5
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        logged = {r for (r,) in connection.execute("SELECT request_id FROM predictions")}
    assert set(answered) <= logged


def _wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server never ready"
        time.sleep(0.2)


def test_the_bad_upload_corpus_gets_json_4xx_or_an_answer_never_5xx(
    server: str, trained_run: Path, tmp_path: Path
):
    from tests.badinput import upload_corpus

    (good,) = _images(trained_run, 1)
    got = {}
    for name, (data, expected) in upload_corpus(tmp_path, good.read_bytes()).items():
        r = httpx.post(f"{server}/predict", files={"file": (name, data)}, headers=AUTH)
        body = r.json()
        got[name] = r.status_code
        assert r.status_code == expected, (name, r.status_code, body)
        assert ("prediction" in body) if expected == 200 else body["detail"], name
        assert body["request_id"] == r.headers["x-request-id"]
    assert (
        "warnings"
        in httpx.post(  # a 1x1 image is answered, with a warning
            f"{server}/predict",
            files={"file": ("one.png", upload_corpus(tmp_path, b"")["one-pixel.png"][0])},
            headers=AUTH,
        ).json()
    )
    assert httpx.get(f"{server}/health").status_code == 200


def test_several_workers_share_one_port_and_their_metrics_add_up(trained_run: Path):
    with served(trained_run / "export" / "model.onnx", extra=("serve.workers=2",)) as url:
        _wait_ready(url)
        (image,) = _images(trained_run, 1)
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers
            assert (
                httpx.post(f"{url}/predict", files={"file": image.read_bytes()}).status_code == 200
            )
        deadline = time.monotonic() + 30
        while (metrics := _metrics(url)) and _value(metrics, "medclf_batch_size_count") < 14:
            assert time.monotonic() < deadline, metrics  # the other worker still warming up
            time.sleep(0.2)
    assert _value(metrics, 'medclf_requests_total{route="/predict",status="200"}') == 12
    # 12 requests plus one warm-up batch per worker: both processes are counted
    assert _value(metrics, "medclf_batch_size_count") == 14
    assert metrics.count("medclf_model_info{") == 1


def test_concurrent_large_uploads_stay_within_the_memory_budget(trained_run: Path):
    """12 concurrent 32 MiB uploads (unreadable: each is refused after being read), with two
    upload slots: the service holds about two at a time, and gives the memory back after."""
    import psutil

    settings = ("serve.max_concurrent_uploads=2", "serve.audit_url=null")
    with served(trained_run / "export" / "model.onnx", extra=settings) as url:
        _wait_ready(url)
        port = url.rsplit(":", 1)[1]
        (server,) = [
            p for p in psutil.Process().children(recursive=True) if f"port={port}" in p.cmdline()
        ]
        before = server.memory_info().rss
        blob = b"\x89PNG\r\n\x1a\n" + bytes(32 * 2**20)
        peak = before

        async def load() -> list[int]:
            nonlocal peak
            async with httpx.AsyncClient(timeout=120) as http:
                calls = [http.post(f"{url}/predict", files={"file": blob}) for _ in range(12)]
                task = asyncio.ensure_future(asyncio.gather(*calls))
                while not task.done():
                    peak = max(peak, server.memory_info().rss)
                    await asyncio.sleep(0.02)
                return [r.status_code for r in task.result()]

        statuses = asyncio.run(load())
        time.sleep(1)
        after = server.memory_info().rss
    assert set(statuses) == {400}
    mib = 2**20
    assert (peak - before) / mib < 250, (before / mib, peak / mib)  # 12 at once: about 800
    assert (after - before) / mib < 80, (before / mib, after / mib)


TRITON_CLIENT = """
import json, sys
import numpy as np
import tritonclient.http as triton

url, name, key, tensor = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
headers = {"X-API-Key": key}
client = triton.InferenceServerClient(url=url)
assert client.is_server_live() and client.is_server_ready()
assert client.is_model_ready(name, headers=headers)
meta = client.get_model_metadata(name, headers=headers)
x = np.load(tensor)
given = triton.InferInput("input", list(x.shape), "FP32")
given.set_data_from_numpy(x, binary_data=False)
wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
result = client.infer(name, [given], outputs=[wanted], headers=headers)
probs = result.as_numpy("probabilities").tolist()
print(json.dumps({"inputs": meta["inputs"], "probabilities": probs}))
"""


def test_the_official_triton_client_works_unchanged(server: str, trained_run: Path, tmp_path):
    """tritonclient.http (KServe/Triton's own client) against the v2 routes, in its own
    process (it brings gevent)."""
    from medclf.inference.predictor import load_predictor

    images = _images(trained_run, 2)
    onnx = load_predictor(trained_run / "export" / "model.onnx")
    np.save(tmp_path / "x.npy", np.stack([onnx.prepare(p)[0] for p in images]))
    host = server.removeprefix("http://")
    args = [host, trained_run.name, KEY, str(tmp_path / "x.npy")]
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_CLIENT, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["inputs"][0]["shape"] == [-1, 1, 32, 32]
    for row, image in zip(out["probabilities"], images, strict=True):
        expected = list(_predict(server, image)["probabilities"].values())
        assert row == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_audit_log_that_cannot_be_opened_is_one_line_before_the_port_opens(
    trained_run: Path, tmp_path: Path, workers: int
):
    bad = "sqlite:////proc/medclf-no-such-folder/audit.db"
    proc = medclf(
        "serve",
        f"model={trained_run / 'export' / 'model.onnx'}",
        f"serve.workers={workers}",
        f"serve.audit_url={bad}",
        "port=1",  # never bound: the check comes first
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "serving" not in proc.stdout, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"error: serve.audit_url={bad}: the audit log cannot be opened")
