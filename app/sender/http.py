"""One attempt of one delivery over HTTP: the request, the destination's check, the send.

**Pinning the checked address.** The host is resolved here (``getaddrinfo``), the first
address is checked (``app/postbacks/destinations.py``), and the request goes to that address
itself: its URL's host is replaced by the address, the ``Host`` header keeps the name and,
for https, so does the TLS server name (httpx's ``sni_hostname`` extension), which is also
the name the certificate is verified against. No second resolution happens, so a name that
resolves elsewhere when the connection is made (DNS rebinding) cannot reach an address that
was not checked. Checking the peer after the connection would have worked too, but only
after a connection to a forbidden address was already made.

Since connections are pooled by address, a TLS connection made for one name could be reused
for another name on the same address: each endpoint (and host name) gets a client of its
own, with as many connections as the endpoint may have requests in flight (a pool of a few
connections also keeps httpcore's pool bookkeeping, linear in its connections per request,
cheap); the most recently used ``MAX_CLIENTS`` are kept.

Never followed: redirects (a 3xx is a failed attempt). Read: the response's first
``MAX_RESPONSE_BYTES`` bytes, as sent (``Accept-Encoding: identity``: nothing to inflate).
Bounded: connecting by ``CLICKTRACK_POSTBACK_CONNECT_TIMEOUT_MS``, the whole attempt
(resolution included) by ``CLICKTRACK_POSTBACK_TIMEOUT_MS``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from ipaddress import ip_address

import httpx
import orjson

from app.postbacks import signing
from app.postbacks.destinations import DestinationRules, IpAddress
from app.postbacks.queue import Attempt, Claimed, Outcome
from app.postbacks.templates import fill

MAX_RESPONSE_BYTES = 1024
MAX_CLIENTS = 256
USER_AGENT = "clicktrack-postbacks/1"


class Refused(Exception):
    """The attempt was not made (the message says why): a destination not allowed, a name
    that does not resolve."""


def build_request(claimed: Claimed, now: int) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, URL, body, headers) of an attempt made at unix time ``now``."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if claimed.kind == "postback":
        return "GET", fill(claimed.url, claimed.payload), None, headers
    assert claimed.secret is not None  # a webhook has one (a CHECK of the table)
    body = orjson.dumps(claimed.payload)
    signed = signing.headers(claimed.secret, now, body, claimed.event, str(claimed.event_id))
    return "POST", claimed.url, body, {**headers, **signed}


class HttpSender:
    """Makes attempts; one per process, closed with ``aclose``."""

    def __init__(
        self,
        rules: DestinationRules,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        per_endpoint: int = 4,
    ) -> None:
        self.rules = rules
        self.per_endpoint = per_endpoint
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._clients: OrderedDict[tuple[int, str], httpx.AsyncClient] = OrderedDict()
        # One context for every client: loading the CA bundle costs ~40 ms each time.
        self._tls = httpx.create_ssl_context()

    def _client(self, endpoint_id: int, host: str) -> httpx.AsyncClient:
        key = (endpoint_id, host)
        client = self._clients.pop(key, None)
        if client is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: the address checked is hit
                verify=self._tls,
                limits=httpx.Limits(
                    max_connections=self.per_endpoint, max_keepalive_connections=self.per_endpoint
                ),
            )
            while len(self._clients) >= MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                # In-flight requests on it end within the timeout; close it after that.
                asyncio.get_running_loop().call_later(self.timeout_s + 1, _close_later, old)
        self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    async def _resolve(self, host: str, port: int) -> IpAddress:
        try:
            return ip_address(host.strip("[]"))
        except ValueError:
            pass
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise Refused(f"host {host} does not resolve ({exc.strerror})") from None
        if not found:
            raise Refused(f"host {host} does not resolve")
        return ip_address(str(found[0][4][0]).split("%", 1)[0])

    async def _send(self, claimed: Claimed) -> tuple[int, str]:
        """(status code, the response's first bytes as text). Raises ``Refused``,
        ``httpx.HTTPError``."""
        method, url_text, body, headers = build_request(claimed, int(time.time()))
        url = httpx.URL(url_text)
        host = url.raw_host.decode("ascii")  # IDNA form; an IPv6 literal without brackets
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self._resolve(host, port)
        refusal = self.rules.refusal(address)
        if refusal is not None:
            raise Refused(refusal)
        client = self._client(claimed.endpoint_id, host)
        request = client.build_request(
            method,
            url.copy_with(host=str(address)),
            content=body,
            # The name, not the address: what the receiver's virtual hosts answer to.
            headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": host} if url.scheme == "https" else {},
        )
        response = await client.send(request, stream=True)
        try:
            head = bytearray()
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code, storable(bytes(head[:MAX_RESPONSE_BYTES]))

    async def attempt(self, claimed: Claimed) -> Attempt:
        """Make one attempt; its outcome is ``delivered`` (a 2xx answer) or ``retry`` (the
        caller decides whether there is another try)."""
        started = time.monotonic()

        def done(**fields: object) -> Attempt:
            latency = int((time.monotonic() - started) * 1000)
            return Attempt(latency_ms=latency, **fields)  # type: ignore[arg-type]

        try:
            async with asyncio.timeout(self.timeout_s):
                sent = await self._send(claimed)
        except Refused as exc:
            return done(outcome=Outcome.retry, error=str(exc))
        except TimeoutError:
            return done(outcome=Outcome.retry, error=f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return done(outcome=Outcome.retry, error=storable(_describe(exc).encode()))
        status, head = sent
        if 200 <= status < 300:
            return done(outcome=Outcome.delivered, status_code=status, response=head)
        error = f"answered {status}"
        if 300 <= status < 400:
            error += ": redirects are not followed"
        return done(outcome=Outcome.retry, status_code=status, response=head, error=error)


def storable(raw: bytes) -> str:
    """A receiver's bytes as text Postgres can store: UTF-8 with U+FFFD for what is not, and
    for NUL (a text column refuses it; a refused write would leave the attempt unrecorded
    and the delivery sent again at the lease's end)."""
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _close_later(client: httpx.AsyncClient) -> None:
    task = asyncio.ensure_future(client.aclose())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Future[None]] = set()


def _describe(exc: httpx.HTTPError) -> str:
    """An httpx error in a few words for the log."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "could not connect in time"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
