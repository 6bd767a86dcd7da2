"""The operator commands for accounts, registered by ``app/cli.py``: create an admin key,
a publisher (or network), a publisher's API key. Each key is printed once (only its hash is
stored); each creation is in the audit log, as made by ``cli:<os user>``, with the key's id
and prefix, never the key."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.accounts import publishers
from app.accounts.apikeys import Role, create_key, get_key
from app.accounts.publishers import PublisherKind
from app.audit.fields import API_KEY, PUBLISHER, snapshot
from app.audit.log import cli_actor, record
from app.cli_apikeys import iso_instant, utf8_text
from app.core.db import Conn
from app.errors import NotFound
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]
EXPIRY_HELP = "when the key stops working (ISO 8601 with its zone); default: never"


async def audited_key(
    conn: Conn, role: Role, publisher_id: int | None, name: str, expires_at: datetime | None
) -> tuple[int, str]:
    """Create a key and its 'api_key.create' entry; call in a transaction. Returns the key's
    id and the key (to print once). An expiry not in the future raises ApiKeyError."""
    key_id, key = await create_key(conn, role, publisher_id, name, expires_at)
    created = await get_key(conn, key_id)
    assert created is not None
    await record(
        conn,
        cli_actor(),
        "api_key.create",
        "api_key",
        key_id,
        after=snapshot(created, API_KEY),
        publisher_id=publisher_id,
    )
    return key_id, key


@dataclass(frozen=True)
class AccountCommands:
    connect: Connect

    async def create_admin_key(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                key_id, key = await audited_key(conn, Role.admin, None, args.name, args.expires_at)
        finally:
            await conn.close()
        print(f"admin key {key_id} created; it is shown only now:\n{key}")

    async def create_publisher(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                created = await publishers.create_publisher(
                    conn, args.name, PublisherKind(args.kind), args.network_id
                )
                await record(
                    conn,
                    cli_actor(),
                    "publisher.create",
                    "publisher",
                    created.id,
                    after=snapshot(created, PUBLISHER),
                    publisher_id=created.id,
                )
        finally:
            await conn.close()
        print(f"publisher {created.id} created ({created.kind}): {created.name}")

    async def create_api_key(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                if await publishers.get_publisher(conn, args.publisher_id) is None:
                    raise NotFound(f"publisher {args.publisher_id} does not exist")
                key_id, key = await audited_key(
                    conn, Role.publisher, args.publisher_id, args.name, args.expires_at
                )
        finally:
            await conn.close()
        print(f"publisher key {key_id} created for publisher {args.publisher_id}; shown only now:")
        print(key)

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the commands to the CLI's parser; ``number`` reads a whole number >= 1."""
        admin = sub.add_parser("create-admin-key", help="create an admin API key and print it")
        admin.add_argument(
            "--name", type=utf8_text, default="", help="a label to recognise the key by"
        )
        admin.add_argument("--expires-at", type=iso_instant, default=None, help=EXPIRY_HELP)
        admin.set_defaults(run=self.create_admin_key)

        pub = sub.add_parser("create-publisher", help="create a publisher (or network)")
        pub.add_argument("name", type=utf8_text)
        pub.add_argument("--kind", choices=[k.value for k in PublisherKind], default="publisher")
        pub.add_argument("--network-id", type=number, default=None)
        pub.set_defaults(run=self.create_publisher)

        key = sub.add_parser("create-api-key", help="create an API key for a publisher")
        key.add_argument("publisher_id", type=number)
        key.add_argument("--name", type=utf8_text, default="")
        key.add_argument("--expires-at", type=iso_instant, default=None, help=EXPIRY_HELP)
        key.set_defaults(run=self.create_api_key)
