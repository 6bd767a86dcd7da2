"""The redirect's own cost, without HTTP: the whole app in-process, its lifespan run, called
as uvicorn would call it with the benchmark's request mix, 64 requests in flight, every click
group-committed to a real Redis. Prints microseconds of CPU per redirect.

It isolates what our code costs from what uvicorn and httptools cost (``make bench`` measures
both together), and it is the process to profile::

    .venv/bin/python -m bench.hotpath                      # own throwaway Redis and Postgres
    py-spy record -o hot.svg -- .venv/bin/python -m bench.hotpath --seconds 20
    .venv/bin/python -m bench.hotpath --caps               # the links' copies with two click caps
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager

from app.edge.session import SessionCookie
from app.main import create_app
from app.settings import Settings
from bench.harness import COOKIE_SECRET, KEY_PREFIX
from bench.services import (
    CAPS_CODE_PREFIX,
    STOPPING_ERRORS,
    Stores,
    seed_capped_links,
    seed_links,
)
from bench.traffic import Request, redirect_requests


def _scope(request: Request, state: dict[str, Any]) -> dict[str, Any]:
    path, _, query = request.path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            *((k.lower().encode(), v.encode()) for k, v in request.headers),
        ],
        "client": ("127.0.0.1", random.randint(1024, 65535)),
        "server": ("127.0.0.1", 8000),
        "state": state,
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def measure(settings: Settings, requests: list[Request], seconds: float, tasks: int) -> None:
    app = create_app(settings)
    statuses: dict[int, int] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async with LifespanManager(app) as manager:
        state = manager._state  # what uvicorn hands each request as scope["state"]
        scopes = [_scope(request, state) for request in requests]

        async def client(offset: int, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                # The scope is copied as uvicorn builds a fresh one per request.
                await app(dict(scopes[(offset + done) % len(scopes)]), _receive, send)  # type: ignore[arg-type]
                done += 1
            return done

        await asyncio.gather(*(client(n * 61, time.perf_counter() + 1.0) for n in range(tasks)))
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        deadline = wall + seconds
        done = sum(await asyncio.gather(*(client(n * 61, deadline) for n in range(tasks))))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"hotpath: {done:,} requests in {wall:.1f} s, {done / wall:,.0f} req/s, "
        f"{cpu / done * 1e6:.1f} us CPU per request, statuses {dict(sorted(statuses.items()))}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=64, help="requests in flight")
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--cpu", type=int, default=0, help="core for this process")
    parser.add_argument("--stores-cpu", type=int, default=1, help="core for Redis, Postgres")
    parser.add_argument("--caps", action="store_true", help="links with two click caps each")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="clicktrack-hotpath-") as workdir:
        stores = Stores(Path(workdir))
        try:
            stores.start()
            # As in production, the stores do not compete with the redirect for its core.
            stores.pin({args.stores_cpu})
            os.sched_setaffinity(0, {args.cpu})
            links = asyncio.run(seed_links(stores.database_url, args.links))
            session = SessionCookie(
                COOKIE_SECRET.encode(), name="ct_sid", secure=False, domain=None, max_age=None
            )
            requests = redirect_requests([link.code for link in links], session, 4096)
            if args.caps:  # the same requests, to the links' copies with click caps
                asyncio.run(seed_capped_links(stores.database_url))
                requests = [
                    dataclasses.replace(r, path=r.path.replace("/e/", f"/e/{CAPS_CODE_PREFIX}", 1))
                    for r in requests
                ]
            settings = Settings(
                redis_url=stores.redis_url,
                database_url=stores.database_url,
                key_prefix=KEY_PREFIX,
                cookie_secret=COOKIE_SECRET,
                cookie_secure=False,
                spool_dir=Path(workdir) / "spool",
            )
            uvloop.run(measure(settings, requests, args.seconds, args.tasks))
        except STOPPING_ERRORS as exc:
            print(f"hotpath: {exc}")
            return 2
        finally:
            stores.stop()
            stores.remove_moved_data()  # the temporary folder's removal would leave it
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
