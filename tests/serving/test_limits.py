"""Clients that send slowly, go away mid-upload or break HTTP framing, against a real
``medclf serve`` on 127.0.0.1 (raw sockets: httpx cannot send a body this badly)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import served

pytestmark = pytest.mark.slow
BODY_TIMEOUT_S = 1.5
WAIT_S = 20  # serve.upload_wait_s: a request that found no slot in this long gets 503
HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 500000\r\n\r\n"
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
)


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def server(trained_run: Path, server_log: Path) -> Iterator[tuple[str, int]]:
    settings = (
        f"serve.body_timeout={BODY_TIMEOUT_S}",
        "serve.max_concurrent_uploads=2",
        f"serve.upload_wait_s={WAIT_S}",
        "serve.audit_url=null",
    )
    with served(trained_run / "export" / "model.onnx", extra=settings, log=server_log) as url:
        yield url, int(url.rsplit(":", 1)[1])


def _image(run: Path) -> Path:
    table = pd.read_csv(run / "split.csv")
    return Path(table.loc[table["split"] == "test", "path"].iloc[0])


def _trickle(port: int, seconds: float, answers: list[bytes]) -> None:
    """An upload whose file arrives one byte a second; keeps what the server answers."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0.05)
        s.sendall(HEAD)
        said, started = b"", time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                s.sendall(b"x")
                chunk = s.recv(65536)
                if not chunk:  # the server closed the connection
                    break
                said += chunk
            except TimeoutError:
                pass
            except OSError:
                break
            time.sleep(1)
        answers.append(said)


def test_trickled_uploads_get_408_and_a_normal_request_is_served_meanwhile(
    server: tuple[str, int], trained_run: Path
):
    """Four connections sending 1 byte/s would hold both upload slots for as long as they
    like; each is cut at serve.body_timeout with 408 (the connection closed), and a normal
    upload sent meanwhile is answered, long before it would have given up waiting (503)."""
    url, port = server
    answers: list[bytes] = []
    slow = [threading.Thread(target=_trickle, args=(port, 30, answers)) for _ in range(4)]
    for t in slow:
        t.start()
    time.sleep(0.5)  # both slots taken
    started = time.monotonic()
    with _image(trained_run).open("rb") as fh:
        r = httpx.post(f"{url}/predict", files={"file": fh}, timeout=60)
    waited = time.monotonic() - started
    for t in slow:
        t.join()
    assert r.status_code == 200, r.text
    assert waited < WAIT_S / 2, waited
    assert len(answers) == 4
    for said in answers:
        head, _, body = said.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), said[:200]
        assert b"connection: close" in head.lower()
        assert b"serve.body_timeout" in body


def test_a_client_gone_mid_upload_is_one_log_line(
    server: tuple[str, int], trained_run: Path, server_log: Path
):
    """A client that disconnects mid-body, and one whose chunked body breaks HTTP framing
    (uvicorn answers it 400 itself, with both Transfer-Encoding and Content-Length sent):
    one line each in the server's log, no traceback, and the service keeps answering."""
    url, port = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(HEAD + b"abc")
        time.sleep(0.3)
    chunked = HEAD.replace(
        b"Content-Length: 500000", b"Transfer-Encoding: chunked\r\nContent-Length: 5"
    )
    head, _, part = chunked.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(head + b"\r\n\r\n" + b"%x\r\n" % len(part) + part + b"\r\nZZ\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400")
    time.sleep(0.5)
    with _image(trained_run).open("rb") as fh:
        assert httpx.post(f"{url}/predict", files={"file": fh}).status_code == 200
    log = server_log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("the client went away before its upload was complete") == 2, log[-3000:]
