"""Every argument of the operator CLI is bounded to what Postgres stores: a value out of range
gets a message in plain words on stderr and a non-zero exit, never a traceback, and nothing
is stored. The parser walk holds the kind (every command, every typed argument); the named
cases are the ones a new user hit."""

from __future__ import annotations

import argparse
import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from app import cli
from app.accounts.apikeys import EXPIRY_LIMIT, ApiKeyError, Role, create_key
from app.cli_apikeys import MAX_BIGINT
from app.core.db import Pool
from app.money.periods import Period
from app.settings import Settings
from tests.conftest import create_database, drop_database
from tests.integration.test_cli import run_cli

TOO_BIG = "99999999999999999999"  # past int64
SAMPLES = ("1", "2016-09", "2016-09-10", "2099-01-01T00:00:00Z", "x")


def _subcommands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _typed(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if callable(action.type) and action.type is not str:
            yield action


def _reads(action: argparse.Action) -> object:
    """The kind of value the argument's type reads (int, date, datetime, Period, ...)."""
    read = action.type
    assert callable(read)
    for sample in SAMPLES:
        try:
            return type(read(sample))
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
    return None


def _valid(action: argparse.Action) -> str:
    """A value the argument accepts (a stub for the arguments not under test)."""
    read = action.type
    for sample in SAMPLES:
        try:
            if callable(read):
                read(sample)
            return sample
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
    raise AssertionError(f"no sample fits {action.dest}")


def _argv(
    command: str, parser: argparse.ArgumentParser, target: argparse.Action, value: str
) -> list[str]:
    """A command line giving ``target`` the ``value``, every other required argument a valid
    one."""
    argv = [command]
    for action in parser._actions:
        if action.option_strings:
            if action is target:
                argv += [action.option_strings[0], value]
            elif action.required:
                argv += [action.option_strings[0], _valid(action)]
        elif action.dest != "help":
            argv.append(value if action is target else _valid(action))
    return argv


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_every_whole_number_argument_refuses_a_value_past_int64(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = []
    for command, sub in _subcommands():
        for action in _typed(sub):
            if _reads(action) is not int:
                continue
            found.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
            err = _refused(_argv(command, sub, action, TOO_BIG), capsys)
            assert "must be" in err and TOO_BIG in err, (command, action.dest, err)
            err = _refused(_argv(command, sub, action, "-1"), capsys)
            assert "must be" in err and "'-1'" in err, (command, action.dest, err)
    # the walk reaches the arguments the user hit (so it walks them all)
    for named in [
        "create-api-key publisher_id",
        "revoke-api-key key_id",
        "rotate-api-key key_id",
        "list-api-keys --publisher-id",
        "list-api-keys --after",
        "create-publisher --network-id",
        "list-audit --before-id",
        "list-audit --publisher-id",
        "list-withdrawals --after",
        "drop-old-clicks --days",
        "redrive --shard",
    ]:
        assert named in found


def test_every_time_argument_refuses_a_time_postgres_cannot_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = []
    for command, sub in _subcommands():
        for action in _typed(sub):
            kind = _reads(action)
            if kind is datetime:
                values = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"]
            elif kind is date:
                values = ["9999-12-31", "0001-01-01"]
            elif kind is Period:
                values = ["9999-12", "0001-01"]
            else:
                continue
            found.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
            for value in values:
                err = _refused(_argv(command, sub, action, value), capsys)
                assert "1970 to 2999" in err, (command, action.dest, err)
    for named in [
        "create-admin-key --expires-at",
        "create-api-key --expires-at",
        "rotate-api-key --expires-at",
        "backfill-rollups --from",
        "backfill-rollups --to",
        "close-period period",
    ]:
        assert named in found


@pytest.mark.parametrize(
    "args",
    [
        ["create-api-key", TOO_BIG],
        ["revoke-api-key", TOO_BIG],
        ["rotate-api-key", TOO_BIG],
        ["list-api-keys", "--publisher-id", TOO_BIG],
        ["create-publisher", "bad", "--network-id", TOO_BIG],
        ["list-audit", "--before-id", TOO_BIG],
        ["list-audit", "--publisher-id", TOO_BIG],
    ],
)
def test_an_id_past_int64_is_refused_in_words(database_url: str, args: list[str]) -> None:
    result = run_cli(database_url, *args)
    assert result.returncode == 2
    assert f"must be at most {MAX_BIGINT}: '{TOO_BIG}'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


async def test_the_largest_id_is_read_and_simply_not_found(database_url: str, pool: Pool) -> None:
    result = run_cli(database_url, "create-api-key", str(MAX_BIGINT))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: publisher {MAX_BIGINT} does not exist"
    listed = run_cli(database_url, "list-api-keys", "--after", str(MAX_BIGINT))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("0 keys")


async def test_an_expiry_past_what_postgres_stores_is_refused(
    database_url: str, pool: Pool
) -> None:
    keys = await pool.fetchval("SELECT count(*) FROM api_keys")
    result = run_cli(database_url, "create-admin-key", "--expires-at", "9999-12-31T23:59:59-12:00")
    assert result.returncode == 2
    assert "must be in the years 1970 to 2999 (UTC)" in result.stderr
    assert "Traceback" not in result.stderr
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == keys
    last = run_cli(database_url, "create-admin-key", "--expires-at", "2999-12-31T23:59:59Z")
    assert last.returncode == 0, last.stderr


def test_days_out_of_range_are_refused(database_url: str) -> None:
    result = run_cli(database_url, "backfill-rollups", "--from", "9999-12-31")
    assert result.returncode == 2
    assert "must be a day in the years 1970 to 2999: '9999-12-31'" in result.stderr
    period = run_cli(database_url, "close-period", "9999-12")
    assert period.returncode == 2
    assert "expected a year from 1970 to 2999, got 9999" in period.stderr
    days = run_cli(database_url, "drop-old-clicks", "--days", TOO_BIG)
    assert days.returncode == 2 and "must be at most 36500" in days.stderr


async def test_a_blank_merchant_name_is_called_blank(database_url: str, pool: Pool) -> None:
    merchants = await pool.fetchval("SELECT count(*) FROM merchants")
    result = run_cli(database_url, "create-merchant", "   ")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: name must not be blank"
    long = run_cli(database_url, "create-merchant", "m" * 201)
    assert long.returncode == 1
    assert long.stderr.strip() == "error: name must be at most 200 characters"
    assert await pool.fetchval("SELECT count(*) FROM merchants") == merchants


async def _count_half(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM publishers WHERE name = 'half'")
    finally:
        await conn.close()
    return found


def test_a_value_postgres_refuses_is_a_message_and_nothing_is_kept(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last line of defence: a value past the argument types, refused by Postgres in a
    command's transaction, is one line on stderr, exit code 1, and the transaction is undone."""

    async def half_then_refused(settings: Settings, _args: argparse.Namespace) -> None:
        conn = await cli._connect(settings)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO publishers (name, kind) VALUES ('half', 'publisher')"
                )
                await conn.fetchval("SELECT $1::bigint", 2**70)
        finally:
            await conn.close()

    monkeypatch.setenv("CLICKTRACK_DATABASE_URL", database_url)
    monkeypatch.setattr(cli, "cmd_migrate", half_then_refused)
    assert cli.main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the value was refused: ") and "int64" in err
    assert len(err.strip().splitlines()) == 1
    assert asyncio.run(_count_half(database_url)) == 0


def test_every_argument_has_a_type_and_text_must_be_utf8(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every argument that takes a value reads it with a type (or a list of choices), and
    every text argument refuses bytes that are not UTF-8 (what Postgres cannot store)."""
    found = []
    for command, sub in _subcommands():
        for action in sub._actions:
            if action.nargs == 0 or action.dest == "help" or action.choices is not None:
                continue
            assert action.type not in (None, str), (command, action.dest)
            if _reads(action) is not str:
                continue
            found.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
            err = _refused(_argv(command, sub, action, "\udcff"), capsys)
            assert "not UTF-8 text: '\\udcff'" in err, (command, action.dest, err)
    for named in [
        "create-merchant name",
        "create-merchant --host",
        "set-merchant-hosts hosts",
        "create-publisher name",
        "create-admin-key --name",
        "list-audit --action",
        "pay-withdrawal --reference",
        "reject-withdrawal --reason",
    ]:
        assert named in found


@pytest.mark.parametrize(
    "args",
    [
        ["create-merchant", "\udcff"],  # the byte 0xff, not UTF-8, as the shell passes it
        ["create-admin-key", "--name", "\udcff"],
        ["list-audit", "--action", "\udcff"],
    ],
)
def test_text_that_is_not_utf8_is_refused_in_words(database_url: str, args: list[str]) -> None:
    result = run_cli(database_url, *args)
    assert result.returncode == 2
    assert "not UTF-8 text: '\\udcff'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


async def test_a_database_not_migrated_is_said_so() -> None:
    name = f"clicktrack_bare_{uuid.uuid4().hex[:12]}"
    url = await create_database(name)
    try:
        result = run_cli(url, "list-merchants")
    finally:
        await drop_database(name)
    assert result.returncode == 1
    assert result.stderr.startswith("error: the database is not migrated (")
    assert result.stderr.strip().endswith("run migrate") and "Traceback" not in result.stderr


async def test_keys_refuse_an_expiry_past_the_limit_whoever_asks(pool: Pool) -> None:
    """The store's own bound (for the API too), behind the CLI's argument type."""
    latest = datetime.max.replace(tzinfo=timezone(timedelta(hours=-12)))
    async with pool.acquire() as conn:
        for at in (latest, EXPIRY_LIMIT):
            with pytest.raises(
                ApiKeyError, match=re.escape("must be in the years 1970 to 2999 (UTC)")
            ):
                await create_key(conn, Role.admin, None, "late", at)
        assert await conn.fetchval("SELECT count(*) FROM api_keys WHERE name = 'late'") == 0
