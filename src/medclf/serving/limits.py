"""Request ids, the body-size limit, and how many uploads are held at once.

``RequestGuard`` is plain ASGI middleware, outermost: every request gets an id (the client's
``X-Request-ID`` when it is a sane token, else a new one), returned as ``X-Request-ID`` on
every response, refusals included. It also enforces ``serve.max_upload_mb``: a declared
``Content-Length`` over it is answered at once, and a streamed body is counted while it comes
in and refused at the limit (Starlette would otherwise spool a whole multipart upload to a
temporary file before a route could look at its size). Not FastAPI's ``max_body_size``: its
Starlette limiter answers in plain text, outside the app's handlers, without the request id.
The body must also arrive in time (``serve.body_timeout``, extended by one second for every
``serve.body_min_rate`` KiB received, as Apache's mod_reqtimeout does): a client that trickles
its upload is answered 408 and its upload slot freed, instead of holding it for as long as it
likes (uvicorn bounds only the time between requests). A client that goes away mid-upload is
one log line, not a traceback.
``UploadSlots`` bounds how many uploads are held and decoded at once, so memory stays within
a stated budget.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

_SANE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
Scope = dict[str, Any]
# probes answer without the API key
OPEN_ROUTES = ("/health", "/ready", "/v2/health/live", "/v2/health/ready")
Message = dict[str, Any]
log = logging.getLogger("medclf")


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


def json_error(scope: Scope, status: int, detail: str) -> JSONResponse:
    """Every error the service answers: ``{"detail", "request_id"}``."""
    return JSONResponse(
        status_code=status, content={"detail": detail, "request_id": request_id_of(scope)}
    )


@dataclass(frozen=True)
class BodyLimits:
    """What a request body may be: at most ``max_bytes``, arriving within ``timeout_s``
    seconds, extended by one second for every ``min_rate`` bytes received."""

    max_bytes: int
    timeout_s: float
    min_rate: float  # bytes a second

    def deadline(self, started: float, received: int) -> float:
        return started + self.timeout_s + received / self.min_rate

    def too_slow(self) -> str:
        return (
            f"the request body did not arrive in time (serve.body_timeout={self.timeout_s:g} s, "
            f"then at least serve.body_min_rate={self.min_rate / 1024:g} KiB/s): send it at once"
        )


class RequestGuard:
    def __init__(
        self,
        app: Callable,
        body: BodyLimits,
        too_large: Callable[[], str],
        on_refused: Callable[[Scope, int, str], None] = lambda scope, status, kind: None,
    ) -> None:
        self.app = app
        self.body = body
        self.too_large = too_large  # the message, shared with the streamed-body refusal
        # a refusal made here (outside the metrics middleware, or of a client already gone)
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
        # an answer given before the whole body came in (a refusal) closes the connection:
        # the rest of a trickled or refused body is not waited for
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope["headers"])
        declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
        pending = [chunked or (declared.isdigit() and int(declared) > 0)]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-request-id", request_id.encode())]
                if pending[0]:
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if declared.isdigit() and int(declared) > self.body.max_bytes:
            self.on_refused(scope, 413, "too_large")
            response = json_error(scope, 413, self.too_large())
            return await response(scope, receive, send_with_id)
        try:
            await self.app(scope, self._bounded(receive, pending), send_with_id)
        except ClientDisconnect:
            # gone mid-upload (or its bytes broke HTTP framing, which uvicorn answered 400):
            # nobody is left to answer
            self.on_refused(scope, 499, "client_disconnected")
            log.warning(
                "%s %s: the client went away before its upload was complete (request %s)",
                scope.get("method", ""),
                scope.get("path", "")[:64],
                request_id,
            )

    def _bounded(
        self, receive: Callable[[], Awaitable[Message]], pending: list[bool]
    ) -> Callable[[], Awaitable[Message]]:
        """``receive`` counting the body's bytes against its size and its time; a refusal is
        raised as the HTTPException the route's handler answers (413, 408). ``pending`` is
        cleared once the whole body has come in."""
        seen, started = 0, None
        loop = asyncio.get_running_loop()

        async def bounded_receive() -> Message:
            nonlocal seen, started
            if not pending[0]:  # the whole body is in (or there is none): nothing to time
                return await receive()
            if started is None:  # the clock starts when the app first asks for the body
                started = loop.time()
            left = self.body.deadline(started, seen) - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.0))
            except TimeoutError:
                raise HTTPException(408, self.body.too_slow()) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.body.max_bytes:
                    raise HTTPException(413, self.too_large())
                pending[0] = pending[0] and message.get("more_body", False)
            return message

        return bounded_receive


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
