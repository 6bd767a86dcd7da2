"""The development stack's pure parts (scripts/devstack/): its command line, its reading of the
configuration, the URL helpers. Starting servers is covered where it is used (tests/faults,
tests/integration/test_duplicate_windows.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from devstack import __main__ as cli
from devstack import base, browser, discovery, net, run, servicesenv
from dotenv import dotenv_values

from app.settings import SERVICES_ENV, Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def test_commands_are_those_of_the_makefile() -> None:
    assert list(cli.COMMANDS) == ["run", "test", "services", "faults", "bench", "loadtest"]
    assert cli.TAKES_EXTRA == {"test", "faults", "bench", "loadtest"}
    for command in cli.COMMANDS:
        assert f"$(DEVSTACK) {command}" in (ROOT / "Makefile").read_text()


def test_arguments_after_the_first_double_dash_go_to_the_tool() -> None:
    assert cli.split_extra(["test"]) == (["test"], [])
    assert cli.split_extra(["test", "--"]) == (["test"], [])
    assert cli.split_extra(["faults", "--", "-k", "x", "--", "y"]) == (
        ["faults"],
        ["-k", "x", "--", "y"],
    )


def test_a_command_without_a_tool_refuses_extra_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["services", "--", "-x"])
    assert exit_info.value.code == 2
    assert "services takes no arguments after --" in capsys.readouterr().err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_runs_as_the_makefile_calls_it() -> None:
    """`python scripts/devstack --help`: the folder runs, its modules found as devstack.*."""
    done = subprocess.run(
        [sys.executable, "scripts/devstack", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in cli.COMMANDS:
        assert command in done.stdout


def test_config_is_the_environment_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n"
        "export CLICKTRACK_REDIS_URL='redis://dotenv:6379/0'\n"
        'CLICKTRACK_PORT="8001"\n'
        "CLICKTRACK_EMPTY=\n"
        "OTHER=1\n"
        "not a setting\n"
    )
    environ = {"CLICKTRACK_PORT": "9000", "HOME": "/root"}
    assert base.read_config(environ, dotenv) == {
        "CLICKTRACK_REDIS_URL": "redis://dotenv:6379/0",
        "CLICKTRACK_PORT": "9000",
    }
    assert base.read_config({}, tmp_path / "missing.env") == {}


def test_urls() -> None:
    assert net.redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert net.redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert net.database_name("postgresql://u@h/my%20db") == "my db"
    assert net.database_name("postgresql://u@h") == ""
    assert net.with_database("postgresql://u@h:1/postgres?x=1", "a b") == (
        "postgresql://u@h:1/a%20b?x=1"
    )


def test_missing_binaries_say_what_to_install() -> None:
    message = str(base.MissingBinaries(["redis", "postgres"]))
    assert "need a throwaway redis and postgres" in message
    assert "apt-get install redis-server postgresql" in message


def test_services_env_is_written_for_the_app_and_removed_by_its_writer(tmp_path: Path) -> None:
    """What `make run` publishes in .data/services.env is what the app's settings read; only
    its writer (or anyone, once the writer is gone) removes it."""
    path = tmp_path / ".data" / "services.env"
    urls = {
        "CLICKTRACK_REDIS_URL": "redis://127.0.0.1:56379/0",
        "CLICKTRACK_DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/it's",
    }
    with servicesenv.published(urls, path):
        assert path.stat().st_mode & 0o777 == 0o600
        assert servicesenv.owner(path) == os.getpid()
        assert dotenv_values(path) == urls  # as pydantic-settings reads it
        # Another live devstack's file is not ours to remove.
        assert not servicesenv.remove(path, pid=os.getppid())
        assert path.exists()
    assert not path.exists()
    # A file left by a devstack that is gone (killed) is removed by the next one.
    other = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    servicesenv.write(urls, path, pid=int(other.stdout))
    assert servicesenv.remove(path)
    assert not path.exists()


def test_the_app_reads_what_devstack_publishes(tmp_path: Path) -> None:
    path = tmp_path / SERVICES_ENV
    urls = {"CLICKTRACK_REDIS_URL": "redis://127.0.0.1:56379/0"}
    servicesenv.write(urls, path)
    settings = Settings(_env_file=path)
    assert settings.redis_url == "redis://127.0.0.1:56379/0"


def test_chromium_is_installed_only_where_it_may_be(tmp_path: Path) -> None:
    """`make test` installs Chromium (about 400 MB) only as root on Debian, never when told not
    to; elsewhere it says why and the other checks run (the browser test skips)."""
    missing = tmp_path / "chromium"

    def refusal(environ: dict[str, str], **where: object) -> str | None:
        options: dict[str, object] = {"euid": lambda: 0, "apt": "/usr/bin/apt-get", "debian": True}
        options.update(where)
        return browser.install_refusal(environ, chromium=missing, **options)  # type: ignore[arg-type]

    assert refusal({}) is None
    assert "CLICKTRACK_SKIP_BROWSER_INSTALL is set" in (
        refusal({"CLICKTRACK_SKIP_BROWSER_INSTALL": "1"}) or ""
    )
    for where in ({"euid": lambda: 1000}, {"apt": None}, {"debian": False}):
        assert "cannot be installed here" in (refusal({}, **where) or "")
    missing.touch()
    assert refusal({"CLICKTRACK_SKIP_BROWSER_INSTALL": "1"}, euid=lambda: 1000) is None


def test_the_readme_says_make_test_installs_chromium() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "400 MB" in readme
    assert browser.SKIP_INSTALL_ENV in readme


@pytest.mark.parametrize(
    ("configured", "answers", "printed"),
    [
        (  # the configured server answers: its URL, as configured
            "postgresql://postgres@127.0.0.1:5432/fresh18",
            {"postgresql://postgres@127.0.0.1:5432/postgres"},
            "postgres: postgresql://postgres@127.0.0.1:5432/fresh18  (configured)",
        ),
        (  # it does not: the default server, with the configured database name
            "postgresql://postgres@127.0.0.1:1/fresh18",
            {"postgresql://postgres@127.0.0.1:5432/postgres"},
            "postgres: postgresql://postgres@127.0.0.1:5432/fresh18  (found on the default port)",
        ),
        (  # none configured: the default server, the default database
            None,
            {"postgresql://postgres@127.0.0.1:5432/postgres"},
            "postgres: postgresql://postgres@127.0.0.1:5432/clicktrack  (found on the default "
            "port)",
        ),
    ],
)
def test_the_postgres_url_printed_is_the_one_the_app_uses(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    configured: str | None,
    answers: set[str],
    printed: str,
) -> None:
    """`make run` prints the database the app runs on, not the maintenance database that
    discovery probes the server with."""

    def postgres_problem(url: str) -> str | None:
        return None if url in answers else "connection refused"

    monkeypatch.setattr(discovery, "postgres_problem", postgres_problem)
    monkeypatch.setattr(discovery, "redis_problem", lambda url: None)
    monkeypatch.setattr(run, "ensure_database", lambda url, name: False)
    config = {} if configured is None else {base.DATABASE_URL_ENV: configured}
    stack = discovery.DevStack(config, force_local=False)
    redis_service, postgres_service = stack.up()
    err = capsys.readouterr().err
    assert f"devstack: {printed}\n" in err
    used = run.app_urls(stack, redis_service, postgres_service)[base.DATABASE_URL_ENV]
    assert used == printed.split()[1]
    assert postgres_service.url.endswith("/postgres")  # still probed (and set up) there
