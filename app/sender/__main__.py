"""``python -m app.sender``: delivers the outbox's events (docs/postbacks.md). Several may run.

Exit 0 after SIGTERM or SIGINT (the attempts in flight are finished and recorded first),
128 + the signal's number when a second one comes before that ended, 2 on bad
configuration. A Postgres outage is waited out, never a reason to exit. It also applies the
postback retention (``CLICKTRACK_POSTBACK_RETENTION_DAYS``), soon after start then hourly.

``python -m app.sender --check``: the liveness probe. Exit 0 when the heartbeat the running
sender's event loop writes (``CLICKTRACK_SENDER_HEARTBEAT_FILE``) is fresh, 1 with a one-line
reason otherwise (``app/core/liveness.py``, as the flusher's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvloop
from prometheus_client import start_http_server

from app.core import liveness
from app.core.db import create_pool
from app.core.logs import setup_logging
from app.postbacks.destinations import destination_rules
from app.sender.http import HttpSender
from app.sender.loop import Sender, log
from app.settings import ConfigError, Settings, load_settings

EXIT_BAD_CONFIG = 2


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    liveness.stop_on_signals(asyncio.get_running_loop(), stop, "sender")
    heartbeat = asyncio.create_task(
        liveness.keep_beating(
            settings.sender_heartbeat_file, settings.sender_heartbeat_max_age_s, "sender"
        )
    )
    pool = await create_pool(
        settings.database_url,
        min_size=0,
        max_size=8,
        command_timeout_s=30.0,
        # A claim or an attempt's record lost in a Postgres crash only makes a delivery be
        # sent again (its event id lets the receiver drop it), never lost: no need to wait
        # for the disk on each one.
        server_settings={"synchronous_commit": "off"},
    )
    http = HttpSender(
        destination_rules(settings),
        connect_timeout_s=settings.postback_connect_timeout_ms / 1000,
        timeout_s=settings.postback_timeout_ms / 1000,
        per_endpoint=settings.postback_endpoint_concurrency,
    )
    if settings.sender_metrics_port:
        try:
            start_http_server(settings.sender_metrics_port, addr=settings.sender_metrics_host)
        except OSError as exc:  # sending matters more than being watched
            log.error("metrics_port_unavailable", extra={"error": str(exc)})
    log.info(
        "sender_started",
        extra={"pid": os.getpid(), "retention_days": settings.postback_retention_days},
    )
    try:
        await Sender(settings, pool, http).run(stop)
    finally:
        await http.aclose()
        await pool.close()
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


def check() -> int:
    """The liveness probe: 0 when the heartbeat is fresh, else 1 and why, on one line."""
    return liveness.probe(
        "sender", lambda s: (s.sender_heartbeat_file, s.sender_heartbeat_max_age_s)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sender", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="liveness probe: is the heartbeat fresh?"
    )
    if parser.parse_args(argv).check:
        return check()
    setup_logging()
    try:
        settings = load_settings()
    except ConfigError as exc:
        log.error("invalid_configuration", extra={"error": str(exc)})
        return EXIT_BAD_CONFIG
    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
