"""``devstack loadtest``: the locust load test, loadtests/locustfile.py [-- ARGS], headless,
against the app and a flusher started here; pass/fail by its exit code."""

from __future__ import annotations

import http.client
import importlib.util
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from devstack.base import (
    DATA_ROOT,
    DATABASE_URL_ENV,
    PROJECT_ROOT,
    PYTHON,
    REDIS_URL_ENV,
    DevstackError,
    log,
)
from devstack.discovery import DevStack, Service
from devstack.net import with_database
from devstack.probes import ensure_database
from devstack.signals import wait_until
from devstack.steps import child_env, not_available, run_step, stop_children

LOADTEST_DATABASE = "clicktrack_loadtest"
LOADTEST_DATA = PROJECT_ROOT / "test-artifacts" / "loadtest-data.json"
LOADTEST_REPORTS = PROJECT_ROOT / "test-artifacts" / "loadtest"
# Defaults of `make loadtest`; ARGS given after -- come later on locust's command line, so
# they win (e.g. make loadtest ARGS="--users 200 --run-time 5m --p95-ms 50").
LOADTEST_LOCUST_ARGS = ["--headless", "--users", "50", "--spawn-rate", "25", "--run-time", "60s"]

Children = list[tuple[str, subprocess.Popen[bytes]]]


def _loadtest_env(
    stack: DevStack, redis_service: Service, postgres_service: Service
) -> dict[str, str]:
    """The app's environment for the load test: its own database and Redis key prefix (the
    developer's data stays apart), on a free port."""
    if ensure_database(postgres_service.url, LOADTEST_DATABASE):
        log(f"created database {LOADTEST_DATABASE}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return child_env(
        {
            REDIS_URL_ENV: redis_service.url,
            DATABASE_URL_ENV: with_database(postgres_service.url, LOADTEST_DATABASE),
            "CLICKTRACK_KEY_PREFIX": "ctload",
            "CLICKTRACK_HOST": "127.0.0.1",
            "CLICKTRACK_PORT": str(port),
            "CLICKTRACK_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CLICKTRACK_COOKIE_SECURE": "false",
            "CLICKTRACK_SPOOL_DIR": str(DATA_ROOT / "loadtest-spool"),
        }
    )


def _admin_key(env: Mapping[str, str]) -> str:
    command = [PYTHON, "-m", "app.cli", "create-admin-key", "--name", "loadtest"]
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise DevstackError(f"create-admin-key failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()[-1]


def _http_ok(url: str) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        conn.request("GET", parts.path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _start_app(env: Mapping[str, str], base_url: str, started: Children) -> None:
    """Start the web app and a flusher (added to started as they start); wait for /healthz."""
    for name, module in (("web", "app.serve"), ("flusher", "app.flusher")):
        log(f"starting {name}: python -m {module}")
        process = subprocess.Popen(
            [PYTHON, "-m", module], cwd=PROJECT_ROOT, env=env, start_new_session=True
        )
        started.append((name, process))
    if not wait_until(lambda: _http_ok(f"{base_url}/healthz"), 30):
        raise DevstackError(f"the app did not answer at {base_url}/healthz")


def _run_locust(
    locustfile: Path, base_url: str, env: Mapping[str, str], extra: list[str], started: Children
) -> int:
    """Create the test data through the API, run locust; the exit code (non-zero if the app or
    the flusher died meanwhile)."""
    setup = [PYTHON, "-m", "loadtests.setup_data", "--host", base_url,
             "--out", str(LOADTEST_DATA)]  # fmt: skip
    code, _ = run_step("create load test data (API)", setup, env)
    if code != 0:
        return code
    LOADTEST_REPORTS.parent.mkdir(parents=True, exist_ok=True)
    locust = [
        PYTHON, "-m", "locust", "-f", str(locustfile), "--host", base_url,
        "--data-file", str(LOADTEST_DATA), "--csv", str(LOADTEST_REPORTS),
        "--html", f"{LOADTEST_REPORTS}.html", "--only-summary",
        *LOADTEST_LOCUST_ARGS, *extra,
    ]  # fmt: skip
    code, _ = run_step("locust", locust, env)
    for name, process in started:
        if process.poll() is not None:
            log(f"{name} died during the load test (exit code {process.returncode})")
            code = code or 1
    rel = LOADTEST_REPORTS.relative_to(PROJECT_ROOT)
    log(f"reports: {rel}_stats.csv, {rel}_failures.csv, {rel}.html")
    return code


def cmd_loadtest(extra: list[str]) -> int:
    """Start the app and a flusher on the development stack, create links through the API,
    run locust headless for a bounded time; exit non-zero if a threshold was missed."""
    locustfile = PROJECT_ROOT / "loadtests" / "locustfile.py"
    if not locustfile.is_file():
        return not_available("the load test", locustfile)
    if importlib.util.find_spec("locust") is None:
        log("locust is not installed: .venv/bin/pip install -e '.[load]'")
        return 1
    with DevStack() as stack:
        env = _loadtest_env(stack, *stack.up())
        code, _ = run_step("migrate", [PYTHON, "-m", "app.cli", "migrate"], env)
        if code != 0:
            return code
        env["LOADTEST_ADMIN_KEY"] = _admin_key(env)
        base_url = f"http://127.0.0.1:{env['CLICKTRACK_PORT']}"
        started: Children = []
        try:
            _start_app(env, base_url, started)
            return _run_locust(locustfile, base_url, env, extra, started)
        finally:
            stop_children(started)
