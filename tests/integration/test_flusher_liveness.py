"""A real ``python -m app.flusher``: its heartbeat while it runs, a stuck event loop seen by
``--check`` (while its metrics port, the old probe, still answers), and the second SIGTERM
that exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from app.clicks import stream
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.flusher.loop import Flusher
from app.settings import Settings
from tests.integration.test_flusher import (
    REPO,
    add,
    count_rows,
    drain,
    eventually,
    flusher_env,
    make_clicks,
)
from tests.unit.test_flusher_liveness import run_check

# The real flusher, except that its event loop blocks (time.sleep) once it has read a batch.
STUCK_FLUSHER = """
import sys, time
from app.flusher import __main__ as entry, loop
def stuck(entries, readers):
    print("event-loop-stuck", file=sys.stderr, flush=True)
    time.sleep(600)
loop.sort_entries = stuck
sys.exit(entry.main([]))
"""


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(key_prefix)


@pytest.fixture
def code(key_prefix: str) -> str:
    return key_prefix.rpartition(":")[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def flusher_process(
    settings: Settings, heartbeat: Path, *args: str, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m app.flusher`` (or ``python -c <args>``), its stderr piped; killed after."""
    command = ["-m", "app.flusher"] if not args else list(args)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        cwd=REPO,
        env=flusher_env(settings, CLICKTRACK_FLUSHER_HEARTBEAT_FILE=str(heartbeat), **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def until_line(process: asyncio.subprocess.Process, text: str, within: float = 30) -> None:
    assert process.stderr is not None
    async with asyncio.timeout(within):
        while text.encode() not in (line := await process.stderr.readline()):
            assert line, f"the flusher exited ({process.returncode}) before logging {text}"


async def test_the_heartbeat_is_fresh_while_it_runs_and_gone_after(
    settings: Settings, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "heartbeat"
    async with flusher_process(settings, heartbeat) as process:
        await until_line(process, "flusher_started")
        checked = await asyncio.to_thread(run_check, heartbeat)
        assert checked.returncode == 0, checked.stderr
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert not heartbeat.exists()
    assert (await asyncio.to_thread(run_check, heartbeat)).returncode == 1


async def test_a_stuck_event_loop_fails_the_check_and_a_second_sigterm_still_exits(
    settings: Settings, redis: aioredis.Redis, keys: RedisKeys, code: str, tmp_path: Path
) -> None:
    heartbeat, port = tmp_path / "heartbeat", free_port()
    script = ("-c", STUCK_FLUSHER)
    env = {
        "CLICKTRACK_FLUSHER_HEARTBEAT_MAX_AGE_S": "2",
        "CLICKTRACK_FLUSHER_METRICS_PORT": str(port),
    }
    async with flusher_process(settings, heartbeat, *script, **env) as process:
        await until_line(process, "flusher_started")
        assert (await asyncio.to_thread(run_check, heartbeat)).returncode == 0
        await add(redis, keys, make_clicks(code, 5))
        await until_line(process, "event-loop-stuck")
        await asyncio.sleep(2.5)
        max_age = {"CLICKTRACK_FLUSHER_HEARTBEAT_MAX_AGE_S": "2"}
        checked = await asyncio.to_thread(run_check, heartbeat, **max_age)
        assert checked.returncode == 1 and "stuck" in checked.stderr, checked.stderr
        async with httpx.AsyncClient() as client:  # what the old TCP probe saw: all well
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert process.returncode is None  # the first asks for a graceful stop: it waits
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 5) == 128 + signal.SIGTERM
        assert process.stderr is not None
        assert b'"msg":"flusher_forced_exit"' in await process.stderr.read()


@contextlib.asynccontextmanager
async def clicks_locked(pool: Pool) -> AsyncIterator[None]:
    """Postgres takes no click while this lasts: a flusher's INSERT waits (its batch in hand)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE clicks IN SHARE ROW EXCLUSIVE MODE")
        yield


async def test_a_second_sigterm_exits_at_once_and_loses_nothing(
    settings: Settings,
    redis: aioredis.Redis,
    pool: Pool,
    keys: RedisKeys,
    code: str,
    tmp_path: Path,
) -> None:
    clicks = make_clicks(code, 300, ts_us=time.time_ns() // 1000)
    await Flusher(settings, redis, pool, consumer="f").run_once(read_ahead=False)  # partitions
    await add(redis, keys, clicks)
    env = {"CLICKTRACK_CONSUMER_NAME": "f"}
    async with clicks_locked(pool):
        async with flusher_process(settings, tmp_path / "hb", **env) as process:
            await until_line(process, "flusher_started")

            async def holds_a_batch() -> bool:
                return await stream.pending_count(redis, keys) > 0

            await eventually(holds_a_batch)
            process.send_signal(signal.SIGTERM)
            await until_line(process, "flusher_stopping")
            await asyncio.sleep(0.3)
            assert process.returncode is None  # waiting for its batch, as asked
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            status = await asyncio.wait_for(process.wait(), 5)
            assert (status, time.monotonic() - started < 2) == (128 + signal.SIGTERM, True)
            assert process.stderr is not None
            last = orjson.loads((await process.stderr.read()).splitlines()[-1])
            assert (last["msg"], last["signal"], last["first"]) == (
                "flusher_forced_exit",
                "SIGTERM",
                "SIGTERM",
            )
    pending = await stream.pending_count(redis, keys)
    assert pending > 0  # the batch in hand was never acked: it is read again
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="f"))
    assert await count_rows(pool, code) == 300
