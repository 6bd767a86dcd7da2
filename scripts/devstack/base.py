"""What every module of devstack uses: the project's paths, the settings' names and defaults,
log(), the errors main() reports without a traceback, and the configuration (.env)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DATA_ROOT = PROJECT_ROOT / ".data"
PYTHON = sys.executable

REDIS_URL_ENV = "CLICKTRACK_REDIS_URL"
DATABASE_URL_ENV = "CLICKTRACK_DATABASE_URL"
TEST_REDIS_URL_ENV = "CLICKTRACK_TEST_REDIS_URL"
TEST_DATABASE_URL_ENV = "CLICKTRACK_TEST_DATABASE_URL"
LOCAL_SERVICES_ENV = "CLICKTRACK_LOCAL_SERVICES"

REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_LOCAL_PORT = 56379
POSTGRES_LOCAL_PORT = 55432
DEFAULT_DATABASE = "clicktrack"
MAINTENANCE_DATABASE = "postgres"
CHILD_GRACE_S = 10.0
INSTALL_PACKAGES = {"redis": "redis-server", "postgres": "postgresql"}


class DevstackError(Exception):
    """Something the user has to fix; main() prints it without a traceback."""


class MissingBinaries(DevstackError):
    """A throwaway server is needed, but its binaries are not installed."""

    def __init__(self, kinds: Sequence[str]) -> None:
        packages = " ".join(INSTALL_PACKAGES[kind] for kind in kinds)
        super().__init__(
            f"need a throwaway {' and '.join(kinds)} (none answers, or {LOCAL_SERVICES_ENV}=1), "
            "but the server binaries are not installed.\n"
            f"  Install them (Debian/Ubuntu): apt-get install {packages}\n"
            f"  or point {REDIS_URL_ENV} / {DATABASE_URL_ENV} at running servers."
        )


def log(message: str) -> None:
    """Print message to stderr as a line of devstack's own."""
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, indented ('' if it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with suppress(FileNotFoundError):
        for raw in path.read_text().splitlines():
            line = raw.strip().removeprefix("export ").strip()
            key, sep, value = line.partition("=")
            if not sep or line.startswith("#"):
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def read_config(
    environ: Mapping[str, str] | None = None, dotenv: Path = PROJECT_ROOT / ".env"
) -> dict[str, str]:
    """The non-empty CLICKTRACK_* settings as the app sees them: the environment over .env."""
    merged = _read_dotenv(dotenv)
    merged.update(os.environ if environ is None else environ)
    return {key: value for key, value in merged.items() if key.startswith("CLICKTRACK_") and value}
