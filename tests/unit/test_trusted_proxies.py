"""Behind trusted proxies (app/edge/proxy.py): the scope says whether the direct peer was a
trusted proxy, and the client address is the forwarded one only then; the served app
(app/serve.py) is wrapped exactly when proxies are trusted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from app import serve
from app.edge.proxy import TRUSTED_PEER, TrustedProxies, behind_proxies
from app.main import ClickTrackApp


class Seen:
    """An ASGI app that keeps the scope it was called with."""

    scope: Scope | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = dict(scope)


def through(allow: str, peer: tuple[str, int] | None, **headers: str) -> Scope:
    seen = Seen()
    scope: dict[str, Any] = {
        "type": "http",
        "client": peer,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
        "scheme": "http",
    }

    async def receive() -> Any:
        return {}

    async def send(message: Any) -> None:
        return None

    asyncio.run(TrustedProxies(seen, allow)(scope, receive, send))
    assert seen.scope is not None
    return seen.scope


def test_a_trusted_peer_is_marked_and_its_forwarded_address_used() -> None:
    scope = through("10.0.0.0/8", ("10.1.2.3", 5000), x_forwarded_for="193.0.6.139")
    assert scope[TRUSTED_PEER] is True
    assert scope["client"][0] == "193.0.6.139"


def test_a_trusted_peer_without_a_forwarded_address_is_still_marked() -> None:
    """What uvicorn's own handling could not tell: the scope is not rewritten."""
    scope = through("10.0.0.1", ("10.0.0.1", 5000))
    assert scope[TRUSTED_PEER] is True
    assert scope["client"] == ("10.0.0.1", 5000)


@pytest.mark.parametrize("peer", [("193.0.6.139", 5000), None])
def test_another_peer_is_not_marked_and_its_header_not_believed(
    peer: tuple[str, int] | None,
) -> None:
    scope = through("10.0.0.1", peer, x_forwarded_for="81.91.161.1")
    assert TRUSTED_PEER not in scope
    assert scope["client"] == peer


def test_any_peer_is_trusted_with_a_star() -> None:
    assert through("*", ("193.0.6.139", 1))[TRUSTED_PEER] is True


def test_no_trusted_proxy_leaves_the_app_as_it_is() -> None:
    app = Seen()
    assert behind_proxies(app, None) is app
    assert isinstance(behind_proxies(app, "10.0.0.1"), TrustedProxies)


def test_the_served_app_is_behind_the_configured_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKTRACK_FORWARDED_ALLOW_IPS", "10.0.0.1")
    assert isinstance(serve.create_served_app(), TrustedProxies)
    monkeypatch.delenv("CLICKTRACK_FORWARDED_ALLOW_IPS")
    assert isinstance(serve.create_served_app(), ClickTrackApp)
