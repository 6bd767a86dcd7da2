"""The operator commands for API keys, registered by ``app/cli.py``: list them (prefix,
owner, created, last used, expiry; never the secret), revoke one (refused at once by every
worker), rotate one (a new key printed once; the old one revoked now, or after an overlap).
Revoking and rotating are in the audit log (the key's id and prefix, never the key)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.accounts import apikeys
from app.accounts.apikeys import MAX_OVERLAP_S, ApiKey, Role
from app.audit.fields import API_KEY, snapshot
from app.audit.log import cli_actor, record
from app.errors import NotFound
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]


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


def iso_instant(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its zone (a naive one is refused)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a time zone (Z or +hh:mm): {text!r}")
    return at


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
        listing.add_argument("--after", type=int, default=0, help="ids above this only")
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
