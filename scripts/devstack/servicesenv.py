"""``.data/services.env``: the Redis and Postgres URLs ``devstack run`` (and ``services``) use,
written while it runs and removed when it stops, so that the commands run next in another
terminal (``python -m app.cli ...``, ``python -m app.serve``) reach the same servers, throwaway
ones included, with nothing to export. The app's settings read the file as an env file: real
environment variables win over it, and it wins over ``.env`` (app/settings.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from devstack.base import DATA_ROOT

SERVICES_ENV = DATA_ROOT / "services.env"
_OWNER = "# devstack pid "


def _quoted(value: str) -> str:
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render(values: Mapping[str, str], pid: int) -> str:
    """The file's text: who wrote it (its PID, so only it removes it), then KEY='value' lines."""
    lines = [
        "# The servers `make run` / `make services` use, for the commands run beside it (the",
        "# app's settings read this file below the environment, above .env). Removed when it",
        "# stops; do not edit.",
        f"{_OWNER}{pid}",
        *(f"{key}={_quoted(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def owner(path: Path) -> int | None:
    """The PID of the devstack that wrote path (None if absent or unreadable)."""
    with suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            if line.startswith(_OWNER):
                return int(line.removeprefix(_OWNER))
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write(values: Mapping[str, str], path: Path = SERVICES_ENV, pid: int | None = None) -> None:
    """Write path atomically (a reader never sees half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(render(values, os.getpid() if pid is None else pid))
    os.replace(temporary, path)


def remove(path: Path = SERVICES_ENV, pid: int | None = None) -> bool:
    """Remove path if pid (default: this process) wrote it, or if its writer is gone."""
    writer = owner(path)
    mine = os.getpid() if pid is None else pid
    if writer is None or (writer != mine and _alive(writer)):
        return False
    with suppress(FileNotFoundError):
        path.unlink()
    return True


@contextmanager
def published(values: Mapping[str, str], path: Path = SERVICES_ENV) -> Iterator[Path]:
    """path holds values for as long as the block runs, then goes (if still ours)."""
    write(values, path)
    try:
        yield path
    finally:
        remove(path)
