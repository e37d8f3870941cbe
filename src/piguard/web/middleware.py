"""Pure ASGI middleware: security headers, the body guard (size, media type) and the last resort.

The body guard reads at most `max_body_bytes` (+1 chunk to notice the excess) before the app sees
anything: a declared Content-Length over the limit is refused before reading, a streamed body is
counted as it arrives. The last resort turns an unexpected exception into a bare 500 and logs only
its type and the route template: never its message, which might hold personal data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piguard.kernel.text import LocalText
from piguard.web.errors import INTERNAL, error_body, public

log = logging.getLogger("piguard.web")

STRICT_CSP: Final = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_BASE_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_JSON: Final = b"application/json"
# Built once: what every answer gets, and the headers of the app's that these replace.
_REPLACED: Final = frozenset(name for name, _ in _BASE_HEADERS)
_REPLACED_PRIVATE: Final = _REPLACED | {b"cache-control"}
_STRICT_CSP_HEADER: Final = (b"content-security-policy", STRICT_CSP.encode())
_NO_STORE: Final = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the security headers to every answer; `Cache-Control: no-store` under /v1; the strict
    CSP unless the route set its own (the API docs page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = str(scope.get("path", "")).startswith("/v1")

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_security(message.get("headers", []), private)
            await send(message)

        await self.app(scope, receive, _send)


def _with_security(
    headers: Iterable[tuple[bytes, bytes]], private: bool
) -> list[tuple[bytes, bytes]]:
    names = _REPLACED_PRIVATE if private else _REPLACED
    out = []
    own_csp = False
    for name, value in headers:
        lower = name.lower()
        if lower not in names:
            own_csp = own_csp or lower == b"content-security-policy"
            out.append((name, value))
    out.extend(_BASE_HEADERS)
    if not own_csp:
        out.append(_STRICT_CSP_HEADER)
    if private:
        out.append(_NO_STORE)
    return out


class Admission:
    """At most `limit` requests in the app at once; the next gets 503 `overloaded` with
    `Retry-After` at once. What is admitted waits in bounded queues (worker threads, the audit
    commit, each with its own time bound), so an overload is refused early rather than piled up
    into timeouts."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # the event loop's thread only: no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await _answer(send, 503, "overloaded", _OVERLOADED, retry_after=OVERLOAD_RETRY)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


OVERLOAD_RETRY: Final = 1  # seconds a refused caller should wait
_OVERLOADED: Final = LocalText(
    "服务繁忙，请稍后重试；未做任何处理", "the service is busy; nothing was done, retry later"
)


class BodyGuard:
    """Refuses bodies over the limit (413) and bodies that are not JSON (415), then replays the
    buffered body to the app. `per_path`: other limits for exact paths (a batch route)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(str(scope.get("path", "")), self.max_body_bytes)
        headers = dict(_lower(scope.get("headers", [])))
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        has_body = chunked or bool(declared)
        if has_body and not _is_json(headers.get(b"content-type", b"")):
            await _answer(send, 415, "unsupported_media_type", _NOT_JSON, field="Content-Type")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > limit:
                await _too_large(send, limit)
                return
        if body and not _is_json(headers.get(b"content-type", b"")):
            await _answer(send, 415, "unsupported_media_type", _NOT_JSON, field="Content-Type")
            return
        replayed = False

        async def _receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, _receive, send)


async def _too_large(send: Send, limit: int) -> None:
    text = LocalText(
        f"请求体超过 {limit} 字节的上限", f"the body is over the limit of {limit} bytes"
    )
    await _answer(send, 413, "body_too_large", text, allowed=f"at most {limit} bytes")


class LastResort:
    """An unexpected exception becomes 500 `internal_error`, with nothing of the request in it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "<unmatched>")
            # No traceback and no message: their text may hold personal data.
            log.error("unexpected %s on %s %s", type(exc).__name__, scope.get("method"), route)
            if not started:
                code, text = INTERNAL
                await _answer(send, 500, code, text)


_NOT_JSON: Final = LocalText("请求体必须是 application/json", "the body must be application/json")


def _lower(headers: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
    return ((k.lower(), v) for k, v in headers)


def _is_json(content_type: bytes) -> bool:
    media, _, params = content_type.decode("latin-1").partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = params.strip().lower()
    return not charset or charset.replace(" ", "") in ("charset=utf-8", "charset=utf8")


async def _answer(
    send: Send,
    status: int,
    code: str,
    text: LocalText,
    *,
    field: str | None = None,
    allowed: str | None = None,
    retry_after: int | None = None,
) -> None:
    body = public(error_body(code, text, field=field, allowed=allowed))
    payload = json.dumps(body, ensure_ascii=False).encode()
    headers = [
        (b"content-type", _JSON),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
