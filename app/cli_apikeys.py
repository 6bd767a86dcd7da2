"""The operator commands for API keys, registered by ``app/cli.py``: list them (prefix,
owner, created, last used, expiry; never the secret), revoke one (refused at once by every
worker), rotate one (a new key printed once; the old one revoked now, or after an overlap).
Revoking and rotating are in the audit log (the key's id and prefix, never the key).

It also holds the argument types every command of ``python -m app.cli`` shares: each number,
day, instant and period an operator types is read by one of them and bounded to what
Postgres stores, so a bad value is refused by argparse in plain words (exit code 2) before
anything is read or written. Ids are 1 to 2**63-1 (``bigint``), cursors (``--after``) 0 to
that; days and instants lie in the years ``FIRST_YEAR`` to ``LAST_YEAR`` (those of the
calculation periods), in UTC for an instant."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from app.accounts import apikeys
from app.accounts.apikeys import MAX_OVERLAP_S, ApiKey, Role
from app.audit.fields import API_KEY, snapshot
from app.audit.log import cli_actor, record
from app.core.years import YEARS_WORDS
from app.errors import NotFound
from app.money.periods import FIRST_YEAR, LAST_YEAR, Period, PeriodError
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
MAX_BIGINT = 2**63 - 1
YEARS = f"{FIRST_YEAR} to {LAST_YEAR}"

WholeNumber = Callable[[str], int]


def whole_number(low: int, high: int = MAX_BIGINT) -> WholeNumber:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more: {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}: {text!r}")
        return value

    read.__name__ = f"whole number from {low} to {high}"
    return read


def utf8_text(value: str) -> str:
    """An argparse type: text as typed, refused when it is not UTF-8 (bytes the shell passed
    that Postgres could not store); ``str`` for every text argument of the CLI."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not UTF-8 text: {value!r}") from None
    return value


positive_id = whole_number(1)  # an id, a count: 1 to 2**63-1
cursor = whole_number(0)  # ``--after``: ids above this one, 0 for the first page


def day(text: str) -> date:
    """An argparse type: a day, YYYY-MM-DD, in the years ``FIRST_YEAR`` to ``LAST_YEAR``."""
    try:
        found = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    if not FIRST_YEAR <= found.year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"must be a day in the years {YEARS}: {text!r}")
    return found


def iso_instant(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its zone (a naive one is refused), falling in
    the years ``FIRST_YEAR`` to ``LAST_YEAR`` in UTC; returned in UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"needs a time zone (Z or +hh:mm): {text!r}")
    try:
        utc = at.astimezone(UTC)
    except OverflowError:  # past 9999-12-31 or before 0001-01-01 once in UTC
        utc = None
    if utc is None or not FIRST_YEAR <= utc.year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"{YEARS_WORDS}: {text!r}")
    return utc


def period(text: str) -> Period:
    """An argparse type: a calculation period, YYYY-MM (see ``app/money/periods.py``)."""
    try:
        return Period.parse(text)
    except PeriodError as exc:
        raise argparse.ArgumentTypeError(str(exc.describe())) from None


def _when(at: datetime | None) -> str:
    return "never" if at is None else f"{at:%Y-%m-%d %H:%M:%S}Z"


def describe(key: ApiKey) -> str:
    """One line per key, as the list prints it (times in UTC)."""
    owner = "admin" if key.publisher_id is None else f"publisher {key.publisher_id}"
    line = (
        f"key {key.id}: {key.prefix}… {owner}, {key.status}"
        f"{f' ({key.name})' if key.name else ''}, created {_when(key.created_at)}, "
        f"last used {_when(key.last_used_at)}, expires {_when(key.expires_at)}"
    )
    if key.revoked_at is not None:
        line += f", revoked {_when(key.revoked_at)}"
    if key.replaced_by is not None:
        line += f", replaced by key {key.replaced_by}"
    return line


def _overlap(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_OVERLAP_S:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_OVERLAP_S}: {text!r}")
    return value


@dataclass(frozen=True)
class ApiKeyCommands:
    connect: Connect

    async def list_keys(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            page = await apikeys.list_keys(
                conn,
                args.publisher_id,
                role=Role.admin if args.admin else None,
                include_revoked=args.all,
                after=args.after,
                limit=args.limit,
            )
        finally:
            await conn.close()
        for key in page:
            print(describe(key))
        print(f"{len(page)} keys{'' if args.all else ' (revoked ones hidden: --all)'}")
        if len(page) == args.limit:
            print(f"more may follow: --after {page[-1].id}")

    async def revoke(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await apikeys.get_key(conn, args.key_id)
                revoked = await apikeys.revoke_key(conn, args.key_id)
                if before is None or revoked is None:
                    raise NotFound(f"API key {args.key_id} does not exist")
                if before.revoked_at is None:  # revoked already: nothing changed, no entry
                    await record(
                        conn,
                        cli_actor(),
                        "api_key.revoke",
                        "api_key",
                        revoked.id,
                        before=snapshot(before, API_KEY),
                        after=snapshot(revoked, API_KEY),
                        publisher_id=revoked.publisher_id,
                    )
        finally:
            await conn.close()
        print(f"key {revoked.id} revoked at {_when(revoked.revoked_at)}")

    async def rotate(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                old = await apikeys.get_key(conn, args.key_id)
                if old is None:
                    raise NotFound(f"API key {args.key_id} does not exist")
                new_id, key = await apikeys.rotate_key(
                    conn, old, overlap_s=args.overlap_seconds, expires_at=args.expires_at
                )
                replaced = await apikeys.get_key(conn, old.id)
                assert replaced is not None
                await record(
                    conn,
                    cli_actor(),
                    "api_key.rotate",
                    "api_key",
                    old.id,
                    before=snapshot(old, API_KEY),
                    after={**snapshot(replaced, API_KEY), "overlap_seconds": args.overlap_seconds},
                    publisher_id=old.publisher_id,
                )
        finally:
            await conn.close()
        fate = (
            "revoked now"
            if args.overlap_seconds == 0
            else f"still works for {args.overlap_seconds} s"
        )
        print(f"key {old.id} rotated ({fate}); new key {new_id}, shown only now:")
        print(key)

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the commands to the CLI's parser; ``number`` reads a whole number >= 1."""
        listing = sub.add_parser("list-api-keys", help="list API keys (never their secrets)")
        listing.add_argument("--publisher-id", type=number, default=None)
        listing.add_argument("--admin", action="store_true", help="admin keys only")
        listing.add_argument("--all", action="store_true", help="revoked keys too")
        listing.add_argument("--after", type=cursor, default=0, help="ids above this only")
        listing.add_argument("--limit", type=number, default=100)
        listing.set_defaults(run=self.list_keys)

        revoke = sub.add_parser("revoke-api-key", help="revoke an API key now")
        revoke.add_argument("key_id", type=number)
        revoke.set_defaults(run=self.revoke)

        rotate = sub.add_parser(
            "rotate-api-key", help="replace an API key with a new one (printed once)"
        )
        rotate.add_argument("key_id", type=number)
        rotate.add_argument(
            "--overlap-seconds", type=_overlap, default=0,
            help=f"keep the old key working this long (0 to {MAX_OVERLAP_S}; default 0: "
            "revoked now)",
        )  # fmt: skip
        rotate.add_argument(
            "--expires-at", type=iso_instant, default=None, help="the new key's expiry (ISO 8601)"
        )
        rotate.set_defaults(run=self.rotate)
