"""``devstack services``: find or start Redis and Postgres, print them, wait for Ctrl-C."""

from __future__ import annotations

from devstack import servicesenv
from devstack.base import REDIS_URL_ENV, log
from devstack.discovery import DevStack
from devstack.run import app_urls
from devstack.steps import watch


def cmd_services(extra: list[str]) -> int:
    """Print the servers' URLs, then wait until a throwaway one dies or a signal comes."""
    with DevStack() as stack:
        redis_service, postgres_service = stack.up()
        print(f"{REDIS_URL_ENV}={redis_service.url}", flush=True)
        print(f"postgres server: {postgres_service.url}", flush=True)
        started = "; Ctrl-C stops them" if stack.started else " (not started here)"
        log(f"servers are up{started}")
        with servicesenv.published(app_urls(stack, redis_service, postgres_service)) as path:
            log(f"the app's commands run from the project folder find them in {path}")
            return watch([], stack, lambda: True)
