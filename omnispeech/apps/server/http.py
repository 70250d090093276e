"""HTTP plumbing of the server: OpenAI-style errors, the API key, the request size limit.

Every error leaves as ``{"error": {"message", "type", "param", "code"}}`` with the status an
OpenAI client expects (400 bad input, 401 key, 404 unknown voice, 413 too large, 503 busy), so
the official client raises its matching exception and the message is one readable line.

The two checks that must run before a route reads anything are plain ASGI middleware:
:class:`ApiKeyMiddleware` (HTTP and WebSocket) and :class:`BodyLimitMiddleware`, which refuses
a declared ``Content-Length`` over the limit at once and stops a chunked body as soon as it
passes the limit, without reading the rest.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from omnispeech.apps.voices import VoiceNotFound
from omnispeech.errors import CheckpointError, OmnispeechError

log = logging.getLogger("omnispeech.server")

# OpenAI error types by status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    503: "server_busy",
    500: "server_error",
}


class ApiError(Exception):
    """An error with its HTTP status and OpenAI error type.

    Args:
        status: HTTP status code.
        message: one line for the user.
        param: the request field at fault, if one is.
    """

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error")


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    err = ApiError(status, message, param)
    return {"error": {"message": message, "type": err.type, "param": param, "code": None}}


def from_exception(exc: BaseException) -> ApiError:
    """Map an exception raised by the library (or the server) to an :class:`ApiError`."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, VoiceNotFound):
        return ApiError(404, str(exc), "voice")
    if isinstance(exc, CheckpointError):
        return ApiError(500, f"the model failed: {exc}")
    if isinstance(exc, OmnispeechError):  # bad audio, bad options: the caller's to fix
        return ApiError(400, str(exc))
    log.exception("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error ({exc.__class__.__name__}); see the server log")


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _bearer_ok(headers: dict[bytes, bytes], key: str) -> bool:
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), key)


def _subprotocol_ok(headers: dict[bytes, bytes], key: str) -> bool:
    # Browsers cannot set headers on a WebSocket; OpenAI's realtime API takes the key as a
    # subprotocol "openai-insecure-api-key.<key>" instead.
    value = headers.get(b"sec-websocket-protocol", b"").decode("latin-1")
    prefix = "openai-insecure-api-key."
    return any(
        p.strip().startswith(prefix) and hmac.compare_digest(p.strip()[len(prefix) :], key)
        for p in value.split(",")
    )


class ApiKeyMiddleware:
    """Refuse requests without ``Authorization: Bearer <key>`` (401), on every route.

    Args:
        app: the ASGI app.
        api_key: the key; None or empty turns the check off.
    """

    def __init__(self, app, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key or None

    async def __call__(self, scope, receive, send) -> None:
        if self.api_key is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if _bearer_ok(headers, self.api_key):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket" and _subprotocol_ok(headers, self.api_key):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake (the client sees HTTP 403).
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid API key"})
            return
        message = "invalid or missing API key: send 'Authorization: Bearer <key>'"
        await _send_json(send, 401, error_body(401, message))


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse HTTP bodies larger than ``max_bytes`` with 413, reading no more than the limit.

    Args:
        app: the ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body larger than the limit of {self.max_bytes / 1e6:g} MB"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, error_body(413, self._message()))
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, error_body(413, self._message()))


def check_text(text: object, limit: int, field: str = "input") -> str:
    """A non-empty string of at most ``limit`` characters, else a 400 naming ``field``."""
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, f"'{field}' is empty: give the text to speak", field)
    if len(text) > limit:
        raise ApiError(400, f"'{field}' is {len(text)} characters; the limit is {limit}", field)
    return text


__all__ = [
    "ApiError",
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "check_text",
    "error_body",
    "from_exception",
]
