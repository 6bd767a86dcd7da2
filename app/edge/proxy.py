"""Behind trusted proxies: the client address from ``X-Forwarded-For``, and whether the
request came through one of those proxies at all.

The redirect may believe a header a proxy sets (``CLICKTRACK_COUNTRY_HEADER``, such as
``CF-IPCountry``) only when the request's direct peer is one of the proxies trusted for the
client address (``CLICKTRACK_FORWARDED_ALLOW_IPS``): from anyone else it is the client's
own text. uvicorn's proxy handling (``ProxyHeadersMiddleware``) rewrites ``scope["client"]``
to the forwarded address and keeps no trace of the peer, and nothing in the rewritten scope
tells a trusted peer apart (the forwarded address has any port, and a trusted peer that
sent no ``X-Forwarded-For`` is not rewritten at all). So the app applies that same
middleware itself (``behind_proxies``, with uvicorn's own proxy headers off: ``app.serve``),
after marking the scope with ``TRUSTED_PEER`` when its direct peer passes the middleware's
own trust test, on the same list: one decision, taken once, for both uses.
"""

from __future__ import annotations

from typing import cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

# The scope key set to True when the request's direct peer is a trusted proxy; absent else.
TRUSTED_PEER = "clicktrack.trusted_peer"


class TrustedProxies:
    """ASGI middleware: ``scope[TRUSTED_PEER] = True`` when the direct peer is in
    ``forwarded_allow_ips`` (uvicorn's syntax: addresses, networks, ``*`` for any, comma
    separated), then uvicorn's ``ProxyHeadersMiddleware`` on the same list (the client
    address and scheme from ``X-Forwarded-For`` and ``X-Forwarded-Proto``)."""

    def __init__(self, app: ASGIApp, forwarded_allow_ips: str) -> None:
        self._proxy_headers = ProxyHeadersMiddleware(
            cast(ASGI3Application, app), trusted_hosts=forwarded_allow_ips
        )
        self._trusted = self._proxy_headers.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            if client and client[0] in self._trusted:  # the middleware's own test
                scope[TRUSTED_PEER] = True
        await self._proxy_headers(scope, receive, send)  # type: ignore[arg-type]


def behind_proxies(app: ASGIApp, forwarded_allow_ips: str | None) -> ASGIApp:
    """``app`` as served: wrapped in ``TrustedProxies`` when proxies are trusted, else as is
    (no forwarded header is believed, and no request has a trusted peer)."""
    return app if forwarded_allow_ips is None else TrustedProxies(app, forwarded_allow_ips)
