"""The development stack's pure parts (scripts/devstack/): its command line, its reading of the
configuration, the URL helpers. Starting servers is covered where it is used (tests/faults,
tests/integration/test_duplicate_windows.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from devstack import __main__ as cli
from devstack import base, net

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
