"""A TCP proxy the tests can cut and heal: the network between the app and Redis, failing.
It can also slow every reply down (``slow``): a Redis that answers, but late."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut = False
        self.delay_s = 0.0  # added before each reply is passed on (``slow``)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()  # writers towards the app: replies

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def sever(self) -> None:
        """Drop every open connection and refuse new ones until ``heal()``."""
        self.cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self.cut = False
        self.delay_s = 0.0

    def slow(self, delay_s: float) -> None:
        """Until ``heal()``, hold what the server sends for ``delay_s`` seconds before passing
        it on, on open connections and new ones alike. A connection carries one exchange at a
        time (a request, then its reply), so each reply comes ``delay_s`` late."""
        self.delay_s = delay_s

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.cut:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        self._clients.add(client_w)
        await asyncio.gather(
            self._pipe(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True
        )
        self._clients.discard(client_w)
        self._writers -= {client_w, server_w}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s and writer in self._clients:  # a reply, and Redis is "slow"
                    await asyncio.sleep(self.delay_s)
                if self.cut:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    async def stop(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
