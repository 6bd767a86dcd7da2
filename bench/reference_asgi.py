"""Reference 1, the ceiling: a raw ASGI app answering every request with a 302 and a cookie.

Nothing is looked up, parsed, signed or written: what is left is the cost of uvicorn,
httptools and uvloop themselves. Run it as the benchmark does::

    uvicorn bench.reference_asgi:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

LOCATION = b"https://shop.example.com/item/1?aff_click_id=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
SET_COOKIE = b"ct_sid=Zm9vYmFyYmF6cXV4cXV1eA.c2lnbmF0dXJlc2lnbmF0dQ; Path=/; HttpOnly; SameSite=Lax"
_START: dict[str, Any] = {
    "type": "http.response.start",
    "status": 302,
    "headers": [
        (b"location", LOCATION),
        (b"cache-control", b"no-store"),
        (b"set-cookie", SET_COOKIE),
        (b"content-length", b"0"),
    ],
}
_BODY: dict[str, Any] = {"type": "http.response.body", "body": b""}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
