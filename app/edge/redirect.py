"""``GET|HEAD /e/{code}``: the hot path, a plain ASGI handler, readable top to bottom:

resolve the link → parse tracking strings → session → quality flags → the link's rules, if
it has any (``app/edge/rules.py``: the first that matches chooses the destination) → the
link's click caps, if it has any (``app/edge/caps.py``: over one, the click is flagged
``over_cap`` and goes to the cap's fallback) → record the click durably (group commit) → 302.

It never redirects to a URL taken from the request: the Location is the link's stored
destination (or its matching rule's, or a full cap's fallback) plus the click id.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import UTC, tzinfo

import uuid_utils
from starlette.types import Receive, Scope, Send

from app.clicks import record
from app.clicks.record import Click, Flag
from app.core.metrics import REDIRECT_SECONDS, BufferedHistogram
from app.dimensions.country import country_from_header
from app.edge.caps import CapGate, Destination, EdgeCaps
from app.edge.commit import ClickWriter, NotRecorded
from app.edge.linkcache import MISS, LinkCache, LinkUnavailable, RedirectTarget
from app.edge.params import parse_tracking
from app.edge.privacy import IpMasker, normalise_address
from app.edge.proxy import TRUSTED_PEER
from app.edge.quality import request_flags
from app.edge.rules import EdgeRule, RuleFacts
from app.edge.session import SessionCookie
from app.links.model import code_in_path

PREFIX = "/e/"

_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)
_NOT_FOUND = _PAGE.format(title="Link not found", text="This link does not exist.").encode()
_GONE = _PAGE.format(title="Link expired", text="This link is no longer active.").encode()
_UNAVAILABLE = _PAGE.format(
    title="Try again", text="This link cannot be followed right now. Please try again."
).encode()
_NO_STORE = (b"cache-control", b"no-store")
_EMPTY_LENGTH = (b"content-length", b"0")
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_READ_METHODS = frozenset(("GET", "HEAD"))
_PREFIX_LENGTH = len(PREFIX)
_PARAMS_INVALID = int(Flag.params_invalid)
_OVER_CAP = int(Flag.over_cap)
# Where a click goes: the link's destination, its matching rule's, or a cap's fallback.
Where = RedirectTarget | EdgeRule | Destination
# Records one answer's latency, in seconds.
Observe = Callable[[float], None]

# Counted in plain ints per request and added to the histogram every second (metrics.py).
_OBSERVE_REDIRECT = BufferedHistogram(REDIRECT_SECONDS.labels("redirect")).observe
_OBSERVE_NOT_FOUND = BufferedHistogram(REDIRECT_SECONDS.labels("not_found")).observe
_OBSERVE_GONE = BufferedHistogram(REDIRECT_SECONDS.labels("gone")).observe
_OBSERVE_UNAVAILABLE = BufferedHistogram(REDIRECT_SECONDS.labels("unavailable")).observe
_OBSERVE_NOT_ALLOWED = BufferedHistogram(REDIRECT_SECONDS.labels("method_not_allowed")).observe


class Redirect:
    """The ``GET|HEAD /e/{code}`` ASGI handler: 302 to the link's destination once the click
    is durable; 404/410 pages for unknown/expired links, 503 with ``Retry-After`` when the
    link cannot be resolved or the click recorded, 405 for other methods. ``shards``: the
    number of click streams; a session's clicks always go to the same one.
    ``country_header``: the header a trusted proxy sets to the client's country
    (``CLICKTRACK_COUNTRY_HEADER``), believed only from a request whose direct peer is a
    trusted proxy (``app.edge.proxy.TRUSTED_PEER``); its valid value is the click's country,
    for rules and record alike. ``period_tz``: the zone click caps' windows are counted in
    (``CLICKTRACK_PERIOD_TIMEZONE``); ``caps``: the gate checking them (by default one on
    the link cache's Redis, skipped while the click writer spools)."""

    def __init__(
        self,
        links: LinkCache,
        writer: ClickWriter,
        session: SessionCookie,
        *,
        mask_ip: IpMasker,
        enabled_flags: Flag | int,
        shards: int = 1,
        country_header: str | None = None,
        period_tz: tzinfo = UTC,
        caps: CapGate | None = None,
    ) -> None:
        self.links = links
        self.writer = writer
        self.session = session
        self.mask_ip = mask_ip
        self.enabled_flags = int(enabled_flags)
        # A session's clicks share a shard: one flusher sees them in order.
        self.shards = shards
        self.rule_facts = RuleFacts()  # this worker's parsed user agents and languages
        self._country_header = country_header.lower().encode() if country_header else None
        header = frozenset((self._country_header,)) if self._country_header else frozenset()
        self._interesting = _INTERESTING | header
        self.caps = caps or CapGate(
            links.redis,
            links.keys,
            period_tz,
            timeout_s=links.redis_timeout_s,
            healthy=lambda: writer.redis_ok,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        observe: Observe = _OBSERVE_REDIRECT
        try:
            observe = await self._answer(scope, send)
        finally:
            observe(time.perf_counter() - started)

    async def _answer(self, scope: Scope, send: Send) -> Observe:
        """Answer the request; return the latency histogram its answer belongs to."""
        method: str = scope["method"]
        if method not in _READ_METHODS:
            await _page(send, 405, b"", method, [(b"allow", b"GET, HEAD")])
            return _OBSERVE_NOT_ALLOWED
        code: str = scope["path"][_PREFIX_LENGTH:]
        target = self.links.cached(code)
        if target is MISS:
            code_named = code_in_path(code)  # "abcD12345/" and "abcD12345." follow the link
            try:
                target = await self.links.get(code_named) if code_named else None
            except LinkUnavailable:
                await _page(send, 503, _UNAVAILABLE, method, [(b"retry-after", b"5")])
                return _OBSERVE_UNAVAILABLE
        if target is None or not target.active:
            await _page(send, 404, _NOT_FOUND, method)
            return _OBSERVE_NOT_FOUND
        now_us = time.time_ns() // 1000
        if target.expires_at is not None and target.expires_at * 1_000_000 <= now_us:
            await _page(send, 410, _GONE, method)
            return _OBSERVE_GONE

        click, signed_session, where = self._click(scope, method, target, now_us)
        if target.caps:  # a link without caps pays this test alone
            where = await self._capped(target.caps, click, where)
        shard = zlib.crc32(click.session_id.encode()) % self.shards if self.shards > 1 else 0
        try:
            await self.writer.record(record.encode(click), shard)
        except NotRecorded:
            await _page(send, 503, _UNAVAILABLE, method, [(b"retry-after", b"5")])
            return _OBSERVE_UNAVAILABLE

        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [
                    (b"location", where.location(click.click_id).encode("ascii")),
                    _NO_STORE,
                    (b"set-cookie", self.session.set_cookie_header(signed_session)),
                    _EMPTY_LENGTH,
                ],
            }
        )
        await send(_EMPTY_BODY)
        return _OBSERVE_REDIRECT

    async def _capped(self, caps: EdgeCaps, click: Click, where: Where) -> Where:
        """Count ``click`` against ``caps``; over one (or not checked: Redis unavailable), the
        click is flagged ``over_cap``, whatever ``enabled_flags`` says, and goes to the first
        full cap's fallback, else where it was going (the link's destination or its rule's)."""
        full = await self.caps.check(caps, click.publisher_id, click.cn, click.ts_us)
        if full is None:
            return where
        click.flags |= _OVER_CAP
        return full.fallback or where

    def _click(
        self, scope: Scope, method: str, target: RedirectTarget, now_us: int
    ) -> tuple[Click, str, Where]:
        """The click this request makes, the signed session id its cookie carries (the
        request's own, or a new session's), and where it goes (the link, or its rule)."""
        link = target.link
        headers = _interesting_headers(scope["headers"], self._interesting)
        query_string: bytes = scope["query_string"]
        tracking = parse_tracking(query_string)
        signed_session = self.session.from_cookie_header(headers.get(b"cookie"))
        session_new = signed_session is None
        if signed_session is None:
            session_id = self.session.new_session_id()
            signed_session = self.session.sign(session_id)
        else:
            session_id = self.session.session_id(signed_session)
        user_agent = headers.get(b"user-agent")
        flags = request_flags(
            method,
            user_agent,
            headers.get(b"sec-fetch-dest"),
            headers.get(b"sec-purpose") or headers.get(b"purpose") or headers.get(b"x-moz"),
        )
        if tracking.invalid:
            flags |= _PARAMS_INVALID
        client = scope.get("client")
        # Checked once; what is stored and what the per-IP rule judges both start from it.
        address = normalise_address(client[0]) if client else None
        country = self.mask_ip.country(address) if address else None
        if self._country_header is not None and scope.get(TRUSTED_PEER):
            country = country_from_header(headers.get(self._country_header)) or country
        where: Where = target
        rule = None
        if target.rules:  # a link without rules pays this test alone
            where, rule, country = self.rule_facts.choose(
                target.rules, target, country, address, headers, query_string
            )
        click = Click(
            click_id=str(uuid_utils.uuid7()),
            ts_us=now_us,
            link_id=link.id,
            code=link.code,
            publisher_id=link.publisher_id,
            af=tracking.af,
            cn=tracking.cn,
            cv=tracking.cv,
            dp=tracking.dp,
            session_id=session_id,
            session_new=session_new,
            ip=self.mask_ip.mask(address) if address else None,
            user_agent=user_agent[: record.MAX_USER_AGENT] if user_agent else None,
            referer=_clip(headers.get(b"referer"), record.MAX_REFERER),
            accept_language=_clip(headers.get(b"accept-language"), record.MAX_ACCEPT_LANGUAGE),
            method=method,
            flags=flags & self.enabled_flags,
            ip_key=self.mask_ip.window_key(address) if address else None,
            country=country,
            rule=rule,
        )
        return click, signed_session, where


_INTERESTING = frozenset(
    {
        b"cookie",
        b"user-agent",
        b"referer",
        b"accept-language",
        b"sec-fetch-dest",
        b"sec-purpose",
        b"purpose",
        b"x-moz",
    }
)


def _interesting_headers(
    raw: list[tuple[bytes, bytes]], interesting: frozenset[bytes] = _INTERESTING
) -> dict[bytes, str]:
    """The request headers the redirect reads (``interesting``: lower-case names); the first
    of a repeated header wins, except ``cookie`` whose repeats are joined as HTTP/2 splits
    them."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in interesting:
            text = value.decode("utf-8", "replace")
            if "\x00" in text:  # Postgres text cannot hold NUL
                text = text.replace("\x00", "")
            if name not in found:
                found[name] = text
            elif name == b"cookie":
                found[name] += "; " + text
    return found


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


async def _page(
    send: Send,
    status: int,
    body: bytes,
    method: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        _NO_STORE,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
