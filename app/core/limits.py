"""How much a request may bring, checked before any handler reads it.

A query string longer than ``max_query_bytes`` gets a 414, a body longer than
``max_body_bytes`` a 413 (announced by ``Content-Length`` or found while reading a chunked
body). Servers in front usually cap URLs near 8 KiB already; uvicorn caps neither URLs of
that size nor bodies, and a handler that reads a body reads all of it into memory.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"
    b"<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1></body></html>"
)


class RequestLimits:
    def __init__(self, *, max_query_bytes: int, max_body_bytes: int) -> None:
        self.max_query_bytes = max_query_bytes
        self.max_body_bytes = max_body_bytes

    async def admit_query(self, scope: Scope, send: Send) -> bool:
        """Whether the query string is within the limit; if not, the request was answered
        with 414."""
        if len(scope["query_string"]) <= self.max_query_bytes:
            return True
        await _refuse(scope, send, 414, "URI too long", "uri_too_long")
        return False

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The ``receive`` to hand on (a body, if any, already read and within the limit),
        or None when the request was answered with 414 or 413."""
        if not await self.admit_query(scope, send):
            return None
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await _refuse(scope, send, 413, "Request body too large", "body_too_large")
            return None
        if length == 0 or (length is None and not _chunked(scope)):
            return receive  # nothing to read
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(message, receive)  # the client left: let the app see it
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _refuse(scope, send, 413, "Request body too large", "body_too_large")
                return None
            if not message.get("more_body", False):
                return _replay({"type": "http.request", "body": bytes(body)}, receive)


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None  # the server rejects these before us; read it as chunked if it does not


def _chunked(scope: Scope) -> bool:
    return b"chunked" in (_header(scope, b"transfer-encoding") or b"").lower()


async def _refuse(scope: Scope, send: Send, status: int, title: str, kind: str) -> None:
    if scope["path"].startswith("/api/"):
        body = b'{"error":"%s","message":"%s"}' % (kind.encode(), title.lower().encode())
        content_type = b"application/json"
    else:
        body = _PAGE.replace(b"{title}", title.encode())
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
