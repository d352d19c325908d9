"""Request ids, the body-size limit, and how many uploads are held at once.

``RequestGuard`` is plain ASGI middleware, outermost: every request gets an id (the client's
``X-Request-ID`` when it is a sane token, else a new one), returned as ``X-Request-ID`` on
every response, refusals included. It also enforces ``serve.max_upload_mb``: a declared
``Content-Length`` over it is answered at once, and a streamed body is counted while it comes
in and refused at the limit (Starlette would otherwise spool a whole multipart upload to a
temporary file before a route could look at its size). Not FastAPI's ``max_body_size``: its
Starlette limiter answers in plain text, outside the app's handlers, without the request id.
``UploadSlots`` bounds how many uploads are held and decoded at once, so memory stays within
a stated budget.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

_SANE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
Scope = dict[str, Any]
# probes answer without the API key
OPEN_ROUTES = ("/health", "/ready", "/v2/health/live", "/v2/health/ready")
Message = dict[str, Any]


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


def json_error(scope: Scope, status: int, detail: str) -> JSONResponse:
    """Every error the service answers: ``{"detail", "request_id"}``."""
    return JSONResponse(
        status_code=status, content={"detail": detail, "request_id": request_id_of(scope)}
    )


class RequestGuard:
    def __init__(
        self,
        app: Callable,
        max_body_bytes: int,
        too_large: Callable[[], str],
        on_refused: Callable[[Scope], None] = lambda scope: None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large  # the message, shared with the streamed-body refusal
        # a declared-too-large body is answered here, outside the metrics middleware
        self.on_refused = on_refused

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k.lower() == b"x-request-id"), b"")
        text = given.decode("latin-1")
        request_id = text if _SANE_ID.match(text) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            self.on_refused(scope)
            response = json_error(scope, 413, self.too_large())
            response.headers["connection"] = "close"  # the unread body is not waited for
            return await response(scope, receive, send_with_id)
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:  # the route's handler answers 413
                    raise HTTPException(413, self.too_large())
            return message

        await self.app(scope, counting_receive, send_with_id)


class UploadSlots:
    """At most ``n`` uploads read and decoded at once; a request that waits longer than
    ``wait_s`` for a slot is answered 503 (the client retries) instead of queueing forever."""

    def __init__(self, n: int, wait_s: float) -> None:
        self.n = n
        self.wait_s = wait_s
        self._semaphore = asyncio.Semaphore(n)

    async def __aenter__(self) -> UploadSlots:
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self.wait_s)
        except TimeoutError:
            raise HTTPException(
                503,
                f"busy: {self.n} uploads are being read (serve.max_concurrent_uploads); "
                f"none finished within {self.wait_s:g} s. Retry later",
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


class KeyAndTiming:
    """The API key (probes need none) and, for every answer, its route, status and time in
    the metrics. Plain ASGI, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    reads the body in another task and would turn the body limit's 413 into a 500."""

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def noting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        request = Request(scope)
        key = self.service.settings.api_key
        if key and scope["path"] not in OPEN_ROUTES and not _has_key(request, key):
            self.service.telemetry.errors.labels("unauthorized").inc()
            refusal = json_error(
                scope, 401, "missing or wrong API key: send it as 'X-API-Key: KEY'"
            )
            await refusal(scope, receive, noting_send)
        else:
            await self.app(scope, receive, noting_send)
        route = getattr(scope.get("route"), "path", None)  # set by the router when it matched
        paths = self.service.telemetry.paths
        known = route or (scope["path"] if scope["path"] in paths else "unmatched")
        self.service.telemetry.answered(known, status[0], time.perf_counter() - started)


def _has_key(request: Request, key: str) -> bool:
    given = request.headers.get("x-api-key", "")
    bearer = request.headers.get("authorization", "")
    if not given and bearer.lower().startswith("bearer "):
        given = bearer[7:].strip()
    return hmac.compare_digest(given.encode(), key.encode())
