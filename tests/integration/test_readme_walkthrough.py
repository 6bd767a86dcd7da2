"""README.md's Quick start, followed as a new user would, on throwaway servers of its own.

The commands come from README.md itself: the fenced block after the ``<!-- walkthrough``
comment, each command run in order in one bash (its variables, ``ADMIN`` and ``PUB``, carry
over), and each ``# →`` line under a command is the output it must show (``…`` stands for
anything). ``make run`` is what ``make -n run`` says it runs, started in the background.

Where: a copy of the working tree (uncommitted work included; its ``.venv`` a symlink to
ours) in a temporary folder, so that its ``.data/`` is the copy's own. Servers: a
``redis-server`` and a Postgres of the test's own on free loopback ports, started with
scripts/devstack's ``start_redis()`` / ``start_postgres()``. ``make run`` is told them as a
user's configuration would (``CLICKTRACK_REDIS_URL`` / ``CLICKTRACK_DATABASE_URL``), with a
free ``CLICKTRACK_PORT``; the walkthrough's commands get no ``CLICKTRACK_*`` variable at all,
so they reach those servers only through the ``.data/services.env`` that ``make run`` writes
(the machine's own servers on 6379 / 5432, if any, hold no key the app would accept). The
README's ``127.0.0.1:8000`` is the only thing rewritten: to that free port.

Then, as the README says: a few seconds later the click is a row in Postgres (its ``psql``
command, on the URL of ``.data/services.env``), billable (the publisher's traffic report);
once ``make run`` is stopped (SIGINT by PID, as Ctrl-C), ``.data/services.env`` is gone.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack import servers
from devstack.procs import Proc

from app.accounts.apikeys import KEY_PREFIX
from tests.support.processes import PROJECT_ROOT, free_port

README = PROJECT_ROOT / "README.md"
MARK = "<!-- walkthrough"
README_BASE = "127.0.0.1:8000"
# Not copied: git's files, the virtualenv (linked instead), a developer's settings and data,
# caches and artifacts.
TOP_LEVEL_SKIPPED = {".git", ".venv", ".env", ".data", "test-artifacts", ".hypothesis"}
SKIPPED_EVERYWHERE = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# Before each command: a marker on both streams. curl also reports each answer's status on
# stderr (-w '%{stderr}...'), leaving its output, which the README's commands use, as is.
PRELUDE = "curl() { command curl -w '%{stderr}@@http %{http_code}\\n' \"$@\"; }\n"
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


@dataclass
class Step:
    """A command of the walkthrough and the output the README shows under it."""

    command: str
    expected: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def assigns(self) -> str | None:
        match = ASSIGNMENT.match(self.command)
        return match.group(1) if match else None

    @property
    def statuses(self) -> list[int]:
        return [int(line.split()[1]) for line in self.stderr.splitlines() if line[:6] == "@@http"]

    def implied_status(self) -> int:
        """What the README implies: the status line it shows; else 201 for a POST (each
        creates something), 200 otherwise."""
        for line in self.expected:
            if match := re.match(r"HTTP/[\d.]+ (\d{3})", line):
                return int(match.group(1))
        return 201 if "-X POST" in self.command else 200

    def describe(self) -> str:
        return (
            f"$ {self.command}\n(exit code {self.exit_code})\n--- stdout:\n{self.stdout}"
            f"--- stderr:\n{self.stderr}--- expected (README):\n" + "\n".join(self.expected)
        )


def walkthrough_block(text: str) -> list[str]:
    """The lines of the fenced block right after the walkthrough mark."""
    lines = text.splitlines()
    marks = [n for n, line in enumerate(lines) if line.strip().startswith(MARK)]
    assert len(marks) == 1, f"README.md needs exactly one {MARK} ... --> line, has {len(marks)}"
    opening = marks[0] + 1
    assert lines[opening].startswith("```"), "the walkthrough mark must precede a fenced block"
    closing = next(n for n in range(opening + 1, len(lines)) if lines[n].startswith("```"))
    return lines[opening + 1 : closing]


def parse_steps(block: list[str]) -> list[Step]:
    """Commands (a line, and those after a trailing backslash), each with the ``# →`` lines
    below it (and their ``#   `` continuations); other comments are narrative."""
    steps: list[Step] = []
    in_expected = continued = False
    for line in block:
        if continued:
            steps[-1].command += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("# →"):
            assert steps, f"expected output before any command: {line}"
            steps[-1].expected.append(line.removeprefix("# →").strip())
            in_expected = True
        elif in_expected and line.startswith("#   "):
            steps[-1].expected.append(line.removeprefix("#").strip())
        elif line.startswith("#") or not line.strip():
            in_expected = False
        else:
            steps.append(Step(line))
            in_expected, continued = False, line.endswith("\\")
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    """An expected line as a regular expression: ``…`` stands for anything."""
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")), re.IGNORECASE)


def unmatched(expected: list[str], output: str) -> list[str]:
    """The expected lines (a lone ``…``: any lines) not found in output, in order."""
    lines = [line.rstrip("\r") for line in output.splitlines()]
    missing, position = [], 0
    for want in (line for line in expected if line != "…"):
        regex = pattern(want)
        found = next((n for n in range(position, len(lines)) if regex.fullmatch(lines[n])), None)
        if found is None:
            missing.append(want)
        else:
            position = found + 1
    return missing


def script(steps: list[Step]) -> str:
    """One bash script running the steps in order, a marker before each on both streams,
    its exit code and the variable it set after it."""
    parts = [PRELUDE]
    for n, step in enumerate(steps):
        parts.append(f"printf '\\n@@step {n}\\n'; printf '\\n@@step {n}\\n' >&2\n")
        parts.append(step.command + "\n")
        parts.append("__code=$?; printf '\\n@@exit %d\\n' \"$__code\" >&2\n")
        if step.assigns:
            parts.append(f"printf '\\n@@var {step.assigns}=%s\\n' \"${step.assigns}\" >&2\n")
    return "".join(parts)


def split_output(steps: list[Step], stdout: str, stderr: str) -> None:
    """Each step's share of the streams, exit code and variable."""
    for stream, attribute in ((stdout, "stdout"), (stderr, "stderr")):
        chunks = re.split(r"\n@@step (\d+)\n", stream)
        for number, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
            setattr(steps[int(number)], attribute, chunk)
    for step in steps:
        for line in step.stderr.splitlines():
            if line.startswith("@@exit "):
                step.exit_code = int(line.split()[1])
            elif line.startswith("@@var "):
                name, _, value = line.removeprefix("@@var ").partition("=")
                step.variables[name] = value


def copy_tree(target: Path) -> Path:
    """The working tree as it is now (uncommitted work included), its .venv linked."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == PROJECT_ROOT
        return {n for n in names if n in SKIPPED_EVERYWHERE or (top and n in TOP_LEVEL_SKIPPED)}

    shutil.copytree(PROJECT_ROOT, target, ignore=ignore, symlinks=True)
    (target / ".venv").symlink_to(PROJECT_ROOT / ".venv", target_is_directory=True)
    return target


def make_run_command(checkout: Path) -> list[str]:
    """What ``make run`` runs once set up: the last line ``make -n run`` prints."""
    assert shutil.which("make"), "the README's Quick start needs make; it is not installed"
    # --no-print-directory: under `make test` (MAKELEVEL set) make would add "Entering
    # directory" lines around the command.
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    command = shown.stdout.strip().splitlines()[-1]
    assert "scripts/devstack run" in command, shown.stdout
    return shlex.split(command)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key] = value.strip("'\"")
    return values


def clean_env(**settings: str) -> dict[str, str]:
    """Our environment without any CLICKTRACK_* variable (nor our virtualenv's), plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(settings)
    return env


def eventually(check: Callable[[], Any], within: float, what: str) -> Any:
    """check()'s first truthy answer, polling; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (answer := check()):
        assert time.monotonic() < deadline, f"{what}: not within {within:.0f}s"
        time.sleep(0.2)
    return answer


class MakeRun:
    """``make run``'s command in the background, in its own session; stopped by PID."""

    def __init__(self, command: list[str], checkout: Path, env: dict[str, str], log: Path):
        self.log_path = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=checkout,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proc = Proc.find(self.process.pid)
        self.children: list[Proc] = []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, base_url: str, within: float = 60.0) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"make run exited:\n{self.log()}"
            try:
                return httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, within, f"make run ready at {base_url}/readyz\n{self.log()}")

    def stop(self) -> int:
        """Ctrl-C's signal (SIGINT) to it alone; SIGKILL after 30s, and to its children
        (the web app and the flusher, in sessions of their own) then too."""
        self.children = children = self.proc.children() if self.proc else []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for child in children:
            child.signal(signal.SIGKILL)
        return self.process.wait()


@pytest.fixture
def throwaway_servers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(Redis URL, Postgres maintenance URL) of a redis-server and a Postgres of our own."""
    missing = [
        name
        for name, found in (
            ("redis-server", servers.find_redis_server()),
            ("Postgres (initdb, pg_ctl, postgres)", servers.find_postgres_bin_dir()),
        )
        if found is None
    ]
    if missing:
        pytest.skip(
            f"README WALKTHROUGH NOT RUN: {' and '.join(missing)} not installed (as scripts/"
            "devstack finds them: on PATH, or Postgres under /usr/lib/postgresql/*/bin)"
        )
    with servers.start_redis(tmp_path / "redis", free_port()) as redis_server:
        postgres_server = servers.start_postgres(tmp_path / "pg", free_port())
        try:
            yield redis_server.url, postgres_server.url
        finally:
            postgres_server.stop()
            # As root, its folders may be under /tmp instead (start_postgres()): ours only.
            for folder in (postgres_server.data_dir, postgres_server.log_path.parent):
                if not folder.is_relative_to(tmp_path):
                    shutil.rmtree(folder, ignore_errors=True)


def run_walkthrough(steps: list[Step], checkout: Path, port: int, env: dict[str, str]) -> None:
    text = script(steps).replace(README_BASE, f"127.0.0.1:{port}")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", text],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    split_output(steps, done.stdout, done.stderr)
    assert all(step.exit_code is not None for step in steps), done.stderr


def check_steps(steps: list[Step], port: int) -> None:
    """Every command succeeds, sets its variable, answers the status the README implies and
    shows the output the README shows under it."""
    for step in steps:
        assert step.exit_code == 0, step.describe()
        if step.assigns:
            assert step.variables.get(step.assigns), f"{step.assigns} is empty\n{step.describe()}"
        if "curl" in step.command:
            assert step.statuses == [step.implied_status()], step.describe()
        expected = [line.replace(README_BASE, f"127.0.0.1:{port}") for line in step.expected]
        assert unmatched(expected, step.stdout) == [], step.describe()


def check_click_in_postgres(database_url: str, click_id: str) -> None:
    """The README's psql command (on the URL of .data/services.env, as it says) shows the
    click, tracking strings included, a few seconds later."""
    commands = re.findall(r"`(psql [^`]+)`", README.read_text())
    assert len(commands) == 1, commands
    command = re.sub(r"postgresql://\S+?(?=\s)", shlex.quote(database_url), commands[0])
    psql = shutil.which("psql") or str(servers.find_postgres_bin_dir() or "") + "/psql"
    if not os.access(psql, os.X_OK):
        print(f"walkthrough: no psql to run the README's `{commands[0]}` with; not checked")
        return

    env = {**os.environ, "PATH": f"{Path(psql).parent}:{os.environ.get('PATH', '')}"}

    def row() -> str | None:
        shown = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout if click_id in shown.stdout else None

    shown = eventually(row, 20, f"the click {click_id} in Postgres ({command})")
    line = next(line for line in shown.splitlines() if click_id in line)
    assert [cell.strip() for cell in line.split("|")] == [click_id, "001", "002", "003", "abc"]


def check_billable(base_url: str, publisher_key: str) -> None:
    """The publisher's traffic report counts the README's click, billable (a browser's)."""

    def totals() -> dict[str, int] | None:
        answer = httpx.get(
            f"{base_url}/api/v1/reports/traffic",
            headers={"Authorization": f"Bearer {publisher_key}"},
            params={"group_by": ""},
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, int] = answer.json()["totals"]
        return found if found["clicks"] else None

    found = eventually(totals, 20, "the click in the publisher's traffic report")
    assert found["clicks"] == 1 and found["billable_clicks"] == 1, found


def test_readme_quick_start_as_written(throwaway_servers: tuple[str, str], tmp_path: Path) -> None:
    redis_url, postgres_url = throwaway_servers
    steps = parse_steps(walkthrough_block(README.read_text()))
    variables = {step.assigns: step for step in steps if step.assigns}
    assert {"ADMIN", "PUB"} <= variables.keys(), steps
    checkout = copy_tree(tmp_path / "clicktrack")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    database_url = postgres_url.rpartition("/")[0] + "/clicktrack"
    configured = clean_env(
        CLICKTRACK_REDIS_URL=redis_url,
        CLICKTRACK_DATABASE_URL=database_url,
        CLICKTRACK_PORT=str(port),
        CLICKTRACK_FLUSHER_METRICS_PORT=str(free_port()),
        CLICKTRACK_FLUSHER_HEARTBEAT_FILE=str(tmp_path / "flusher.heartbeat"),
    )
    services_env = checkout / ".data" / "services.env"
    make_run = MakeRun(make_run_command(checkout), checkout, configured, tmp_path / "run.log")
    try:
        make_run.wait_ready(base_url)
        published = read_env_file(services_env)
        assert published["CLICKTRACK_REDIS_URL"] == redis_url, published
        assert published["CLICKTRACK_DATABASE_URL"] == database_url, published

        run_walkthrough(steps, checkout, port, clean_env())
        check_steps(steps, port)
        for name in ("ADMIN", "PUB"):  # API keys, each printed and taken whole
            key = variables[name].variables[name]
            assert key.startswith(KEY_PREFIX), variables[name].describe()
        click = next(step for step in steps if "/e/" in step.command)
        location = re.search(r"aff_click_id=([^&\s]+)", click.stdout)
        assert location, click.describe()
        check_click_in_postgres(published["CLICKTRACK_DATABASE_URL"], location.group(1))
        check_billable(base_url, variables["PUB"].variables["PUB"])
    finally:
        code = make_run.stop()
    assert code in (0, 128 + signal.SIGINT), make_run.log()
    assert not services_env.exists(), "make run left .data/services.env behind"
    assert len(make_run.children) == 3, make_run.log()  # the web app, the flusher, the sender
    assert not [child for child in make_run.children if child.alive()], make_run.log()
    with pytest.raises(httpx.TransportError):  # the web app stopped with it
        httpx.get(f"{base_url}/healthz", timeout=1)
