"""``devstack run``: migrate, then run the app (and the flusher and the postback sender) until
Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from devstack import servicesenv
from devstack.base import (
    DATABASE_URL_ENV,
    PROJECT_ROOT,
    PYTHON,
    REDIS_URL_ENV,
    DevstackError,
    log,
    read_config,
)
from devstack.discovery import DevStack, Service
from devstack.net import port_open
from devstack.probes import ensure_database
from devstack.steps import child_env, run_step, supervise


def app_urls(stack: DevStack, redis_service: Service, postgres_service: Service) -> dict[str, str]:
    """The app's URLs of the found servers (its database created if missing)."""
    name = stack.database_name()
    if ensure_database(postgres_service.url, name):
        log(f"created database {name}")
    return {
        REDIS_URL_ENV: redis_service.url,
        DATABASE_URL_ENV: stack.database_url(postgres_service),
    }


def _app_env(stack: DevStack, redis_service: Service, postgres_service: Service) -> dict[str, str]:
    """The environment for the app: URLs of the found servers, local http cookies."""
    updates = app_urls(stack, redis_service, postgres_service)
    if "CLICKTRACK_COOKIE_SECURE" not in stack.config:
        updates["CLICKTRACK_COOKIE_SECURE"] = "false"  # local http
    return child_env(updates)


def _announcer(stack: DevStack, env: Mapping[str, str]) -> Callable[[], bool]:
    port = int(stack.config.get("CLICKTRACK_PORT", "8000"))

    def announce() -> bool:
        """Once the app listens, say where it runs (True); until then False."""
        if not port_open(port):
            return False
        log(f"clicktrack is running at http://127.0.0.1:{port}  (Ctrl-C stops everything)")
        log("create an admin key:  .venv/bin/python -m app.cli create-admin-key --name me")
        if stack.started:
            relative = servicesenv.SERVICES_ENV.relative_to(PROJECT_ROOT)
            log(f"  (commands run from {PROJECT_ROOT} find these servers in {relative})")
        return True

    return announce


def cmd_run(extra: list[str]) -> int:
    """Migrate, then serve the app, the flusher and the sender until one dies or a signal
    comes."""
    config = read_config()
    port = int(config.get("CLICKTRACK_PORT", "8000"))
    if port_open(port):
        raise DevstackError(f"port {port} is already in use; set CLICKTRACK_PORT to another port")
    with DevStack(config) as stack:
        env = _app_env(stack, *stack.up())
        urls = {key: env[key] for key in (REDIS_URL_ENV, DATABASE_URL_ENV)}
        with servicesenv.published(urls):
            code, _ = run_step("migrate", [PYTHON, "-m", "app.cli", "migrate"], env)
            if code != 0:
                return code
            children = [("web", [PYTHON, "-m", "app.serve"])]
            if (PROJECT_ROOT / "app" / "flusher" / "__main__.py").is_file():
                children.append(("flusher", [PYTHON, "-m", "app.flusher"]))
            if (PROJECT_ROOT / "app" / "sender" / "__main__.py").is_file():
                children.append(("sender", [PYTHON, "-m", "app.sender"]))
            return supervise(children, env, stack, _announcer(stack, env))
