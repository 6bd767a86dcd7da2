"""``python -m app.serve``: run the web app with uvicorn (uvloop, httptools) per settings."""

from __future__ import annotations

import os
import sys
import tempfile

import uvicorn
from starlette.types import ASGIApp

from app.core.logs import setup_logging
from app.core.metrics import serve_metrics
from app.edge.proxy import behind_proxies
from app.settings import ConfigError, load_settings


def create_served_app() -> ASGIApp:
    """The app as each uvicorn worker serves it: ``create_app``, behind the trusted proxies
    of ``CLICKTRACK_FORWARDED_ALLOW_IPS`` (``app.edge.proxy``: the client address from
    ``X-Forwarded-For``, and which requests came through a trusted proxy, so that its
    country header may be believed)."""
    from app.main import create_app  # in the worker, as uvicorn imported it before

    settings = load_settings()
    return behind_proxies(create_app(settings), settings.forwarded_allow_ips)


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes: each writes its metrics to files here, and /metrics in
        # any worker adds them up. A fresh folder, so that no dead worker's values linger.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clicktrack-metrics-")
    if settings.metrics_port:
        # The metrics on a port of their own (CLICKTRACK_METRICS_PORT), served by this process.
        serve_metrics(settings.metrics_port, settings.metrics_host)
    uvicorn.run(
        "app.serve:create_served_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        # Behind a load balancer the app itself takes the client address from
        # X-Forwarded-For, only when the connection comes from one of
        # CLICKTRACK_FORWARDED_ALLOW_IPS (create_served_app): uvicorn's own handling would
        # hide whether the peer was a trusted proxy.
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
