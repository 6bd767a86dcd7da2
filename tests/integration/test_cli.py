"""The operator CLI as a user runs it: real processes, real database, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.core.db import Pool


def run_cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "CLICKTRACK_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_migrate_is_idempotent(database_url: str) -> None:
    result = run_cli(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


async def test_create_admin_publisher_and_key(database_url: str, pool: Pool) -> None:
    admin = run_cli(database_url, "create-admin-key", "--name", "ops")
    assert admin.returncode == 0, admin.stderr
    admin_key = admin.stdout.strip().splitlines()[-1]
    assert admin_key.startswith("ctk_")

    publisher = run_cli(database_url, "create-publisher", "Blog Example")
    assert publisher.returncode == 0, publisher.stderr
    publisher_id = int(publisher.stdout.split()[1])
    assert await pool.fetchval("SELECT name FROM publishers WHERE id = $1", publisher_id) == (
        "Blog Example"
    )

    key = run_cli(database_url, "create-api-key", str(publisher_id))
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().splitlines()[-1].startswith("ctk_")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-api-key", "999999999"], "does not exist"),
        (["close-period", "2016-09", "--publisher-id", "999999999"], "does not exist"),
        (["create-api-key", "abc"], "not a whole number"),
        (["create-api-key", "0"], "must be 1 or more"),
        (["create-publisher", "   "], "must not be blank"),
        (["create-publisher", "X", "--network-id", "999999999"], "does not exist"),
        (["create-publisher", "X", "--kind", "shop"], "invalid choice"),
        (["no-such-command"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_gets_a_message_and_non_zero_exit(
    database_url: str, args: list[str], message: str
) -> None:
    result = run_cli(database_url, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    result = run_cli("postgresql://postgres@127.0.0.1:1/none", "migrate")
    assert result.returncode == 1
    assert "cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_configuration_is_a_clear_error(database_url: str) -> None:
    env = {**os.environ, "CLICKTRACK_ENVIRONMENT": "production", "CLICKTRACK_COOKIE_SECRET": ""}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "COOKIE_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
