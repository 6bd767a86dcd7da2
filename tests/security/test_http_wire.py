"""Hostile bytes on the wire, to the real server (``python -m app.serve``: uvicorn, httptools).

What the ASGI-level tests cannot show: what uvicorn refuses before the app sees it (raw CR,
LF or NUL in the request line, a 1 MiB URL), and that the server is still there after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool
from app.links import store as link_store
from tests.conftest import TEST_REDIS_URL
from tests.security.conftest import DESTINATION
from tests.support.processes import Child, start_web


@dataclass(frozen=True)
class Server:
    child: Child
    host: str
    port: int
    code: str
    api_key: str


@pytest.fixture(scope="module")
async def server(
    database_url: str, pool: Pool, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('wire') RETURNING id"
        )
        link = await link_store.create_link(conn, publisher_id, DESTINATION)
        _, key = await create_key(conn, Role.publisher, publisher_id, "wire")
    folder: Path = tmp_path_factory.mktemp("wire")
    child, base_url = await start_web(
        {
            "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
            "CLICKTRACK_DATABASE_URL": database_url,
            "CLICKTRACK_KEY_PREFIX": f"ctsec:{uuid.uuid4().hex[:12]}",
            "CLICKTRACK_SPOOL_DIR": str(folder / "spool"),
            "CLICKTRACK_COOKIE_SECURE": "false",
        },
        folder,
        folder / "web.log",
    )
    host, _, port = base_url.removeprefix("http://").rpartition(":")
    try:
        yield Server(child, host, int(port), link.code, key)
    finally:
        await child.stop()


async def exchange(server: Server, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(-1)
    except ConnectionResetError:
        return b""  # the server closed while we were still sending: it refused
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def get(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: t", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def assert_alive(server: Server) -> None:
    response = await exchange(server, get(b"/e/" + server.code.encode()))
    assert status_of(response) == 302, response[:300]


@pytest.mark.parametrize(
    "target",
    [
        b"/e/{code}\r\nSet-Cookie: evil=1",
        b"/e/{code}?af=a\rb",
        b"/e/{code}?af=a\nb",
        b"/e/{code}?af=a\x00b",
        b"/e/{code}\x00",
        b"/e/{code}?af=\x7f\xff",
        b"/e/{code} HTTP/1.1\r\nX: y",
    ],
)
async def test_raw_control_bytes_in_the_request_line_are_refused(
    server: Server, target: bytes
) -> None:
    response = await exchange(server, get(target.replace(b"{code}", server.code.encode())))
    assert status_of(response) in {0, 302, 400, 404}, response[:300]
    assert b"evil" not in response.split(b"\r\n\r\n")[0].replace(b"%", b"")
    await assert_alive(server)


async def test_encoded_crlf_never_becomes_a_header(server: Server) -> None:
    target = f"/e/{server.code}?af=a%0D%0ASet-Cookie:%20evil=1&dp=%0AX-Evil:%201".encode()
    response = await exchange(server, get(target))
    head = response.split(b"\r\n\r\n")[0].lower()
    assert status_of(response) == 302
    assert head.count(b"set-cookie:") == 1 and b"evil" not in head


@pytest.mark.parametrize(("size", "statuses"), [(8 * 1024 + 1, {414}), (1024 * 1024, {400, 414})])
async def test_long_query_strings(server: Server, size: int, statuses: set[int]) -> None:
    target = f"/e/{server.code}?af=1&pad=".encode() + b"x" * size
    response = await exchange(server, get(target))
    assert status_of(response) in statuses, response[:200]
    await assert_alive(server)


async def test_huge_headers_do_not_break_the_redirect(server: Server) -> None:
    big = b"x" * (256 * 1024)
    response = await exchange(
        server,
        get(
            b"/e/" + server.code.encode(),
            b"User-Agent: " + big,
            b"Referer: https://r.example/" + big,
            b"Cookie: ct_sid=" + big,
        ),
    )
    assert status_of(response) == 302
    await assert_alive(server)


async def test_an_announced_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    request = (
        b"POST /api/v1/links HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Authorization: Bearer " + server.api_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    )
    response = await exchange(server, request)  # no body sent at all
    assert status_of(response) == 413
    assert b'"error":"body_too_large"' in response


async def test_an_oversized_chunked_body_is_refused(server: Server) -> None:
    chunk = b"x" * 32768
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    request = (
        b"POST /api/v1/links HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Authorization: Bearer " + server.api_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    response = await exchange(server, request)
    assert status_of(response) in {0, 413}, response[:300]
    await assert_alive(server)


async def test_ambiguous_framing_is_refused(server: Server) -> None:
    request = (
        b"POST /api/v1/links HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /e/x HTTP/1.1\r\n\r\n"
    )
    response = await exchange(server, request)
    assert 400 <= status_of(response) < 500, response[:300]
    await assert_alive(server)


async def test_no_traceback_in_the_server_log(server: Server) -> None:
    await assert_alive(server)
    assert "Traceback" not in server.child.log(), server.child.tail()
