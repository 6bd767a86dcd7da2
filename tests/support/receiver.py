"""A real HTTP/1.1 server on 127.0.0.1 standing in for a publisher's endpoint: it records
every request, and can be told to be down (not listening), slow, or to answer an error.

Its idempotent view (``distinct``) counts each event id once, as a receiver that drops
repeats by event id would (the ``X-Clicktrack-Event-Id`` header, or an ``eid`` query
parameter of a postback URL)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.support.processes import free_port


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def query(self) -> dict[str, str]:
        return {
            k: v[0]
            for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()
        }

    @property
    def event_id(self) -> str | None:
        return self.headers.get("x-clicktrack-event-id") or self.query.get("eid")


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.delay_s = 0.0  # slow: wait this long before answering
        self.status = 200  # what it answers
        self.answer = b"ok"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Down: no longer listening, open connections dropped."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            for handler in list(self._handlers):  # a slow answer still waiting
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    @property
    def counts(self) -> Counter[str | None]:
        return Counter(r.event_id for r in self.requests)

    @property
    def distinct(self) -> set[str | None]:
        return set(self.counts)

    async def wait_for(self, count: int, within: float) -> None:
        """Until at least ``count`` requests arrived; fails past ``within`` seconds."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(self.requests)} requests of {count}"
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.requests.append(Received(method, target, headers, body))
        self._arrived.set()
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.answer)}\r\n"
            "Content-Type: text/plain\r\n\r\n".encode()
            + self.answer
        )
        await writer.drain()
        return headers.get("connection", "").lower() != "close"
