"""The operator commands for merchants, registered by ``app/cli.py``: create one (with the
hosts it owns), rotate its postback secret (with an overlap during which the old one is still
accepted), set its hosts, disable or enable it, list them all. Each change is in the audit
log (never a secret), as made by ``cli:<os user>``.

A merchant's postbacks attribute orders only to clicks on links to its hosts; a merchant
with none attributes to any link (how every merchant worked before they had hosts), and the
commands say so with a warning."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.accounts import merchants
from app.accounts.merchants import MAX_SECRET_OVERLAP_S, Merchant, MerchantError
from app.audit.fields import MERCHANT, record_change
from app.audit.log import cli_actor
from app.cli_apikeys import utf8_text
from app.core.db import Conn
from app.errors import NotFound
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]


def _overlap(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_SECRET_OVERLAP_S:
        raise argparse.ArgumentTypeError(
            f"must be 0 to {MAX_SECRET_OVERLAP_S} seconds (7 days): {text!r}"
        )
    return value


async def _existing(conn: Conn, name: str) -> Merchant:
    found = await merchants.get_merchant(conn, name)
    if found is None:
        raise NotFound(f"no merchant named {name.strip()!r}")
    return found


async def _record(
    conn: Conn, verb: str, before: Merchant | None, after: Merchant, **extra: object
) -> None:
    """The audit entry of ``merchant.<verb>``: the merchant's fields, never its secret."""
    await record_change(conn, cli_actor(), "merchant", verb, before, after, MERCHANT, extra=extra)


def _utc(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}Z"


def _status(merchant: Merchant) -> str:
    if merchant.disabled_at is not None:
        return f"disabled since {_utc(merchant.disabled_at)}"
    if merchant.previous_secret_until is not None:
        return f"enabled; old secret accepted until {_utc(merchant.previous_secret_until)}"
    return "enabled"


def describe_hosts(merchant: Merchant) -> str:
    return ", ".join(merchant.hosts) if merchant.hosts else "any host (no hosts set)"


def warn_any_host(merchant: Merchant) -> None:
    if not merchant.hosts:
        print(
            f"warning: merchant {merchant.id} ({merchant.name}) has no hosts: its postbacks "
            f"attribute orders to clicks on any publisher's link; set its own with "
            f"`python -m app.cli set-merchant-hosts {merchant.name!r} shop.example.com ...`",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class MerchantCommands:
    connect: Connect

    async def create(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                merchant, secret = await merchants.create_merchant(conn, args.name, args.host)
                await _record(conn, "create", None, merchant)
        finally:
            await conn.close()
        print(f"merchant {merchant.id} created: {merchant.name}; hosts: {describe_hosts(merchant)}")
        print("its postback secret, shown only now:")
        print(secret)
        warn_any_host(merchant)

    async def rotate(self, settings: Settings, args: argparse.Namespace) -> None:
        overlap = args.overlap_seconds
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await _existing(conn, args.name)
                merchant, secret = await merchants.rotate_secret(conn, before.id, overlap_s=overlap)
                await _record(conn, "rotate_secret", before, merchant, overlap_seconds=overlap)
        finally:
            await conn.close()
        if merchant.previous_secret_until is None:
            fate = "the old one no longer works"
        else:
            fate = f"the old one is still accepted until {_utc(merchant.previous_secret_until)}"
        print(f"merchant {merchant.id} has a new postback secret ({fate}); shown only now:")
        print(secret)

    async def set_disabled(self, settings: Settings, args: argparse.Namespace) -> None:
        disable: bool = args.disable
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await _existing(conn, args.name)
                merchant = await merchants.set_disabled(conn, before.id, disable)
                if (before.disabled_at is None) == disable:  # else no change: no entry
                    await _record(conn, "disable" if disable else "enable", before, merchant)
        finally:
            await conn.close()
        effect = (
            "its postbacks are refused; its orders stay as they are"
            if disable
            else "its postbacks are accepted"
        )
        print(f"merchant {merchant.id} ({merchant.name}) {_status(merchant)}: {effect}")

    async def set_hosts(self, settings: Settings, args: argparse.Namespace) -> None:
        if bool(args.hosts) == args.any_host:
            raise MerchantError(
                "name the hosts the merchant's links point at (shop.example.com, "
                "*.example.com), or pass --any-host alone to let it attribute to any link",
                field="hosts",
            )
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await _existing(conn, args.name)
                merchant = await merchants.set_hosts(conn, before.id, args.hosts)
                if merchant.hosts != before.hosts:
                    await _record(conn, "set_hosts", before, merchant)
        finally:
            await conn.close()
        print(f"merchant {merchant.id} ({merchant.name}) hosts: {describe_hosts(merchant)}")
        warn_any_host(merchant)

    async def list_all(self, settings: Settings, _args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            found = await merchants.list_merchants(conn)
        finally:
            await conn.close()
        for merchant in found:
            status = _status(merchant)
            print(
                f"merchant {merchant.id}: {merchant.name}; hosts: {describe_hosts(merchant)}"
                + ("" if status == "enabled" else f"; {status}")
            )
        print(f"{len(found)} merchants, {sum(not m.hosts for m in found)} without hosts")

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the commands to the CLI's parser."""
        create = sub.add_parser(
            "create-merchant", help="create a merchant and print its postback secret"
        )
        create.add_argument("name", type=utf8_text)
        create.add_argument(
            "--host", action="append", type=utf8_text, default=[], metavar="PATTERN",
            help="a host its links point at: shop.example.com, or *.example.com for any "
            "host below it; repeat for several (none: any host, with a warning)",
        )  # fmt: skip
        create.set_defaults(run=self.create)

        rotate = sub.add_parser("rotate-merchant-secret", help="give a merchant a new secret")
        rotate.add_argument("name", type=utf8_text)
        rotate.add_argument(
            "--overlap-seconds", type=_overlap, default=0,
            help=f"keep accepting the old secret this long (0 to {MAX_SECRET_OVERLAP_S}, 7 "
            "days; default 0: it stops now)",
        )  # fmt: skip
        rotate.set_defaults(run=self.rotate)

        disable = sub.add_parser(
            "disable-merchant", help="refuse a merchant's postbacks (its orders are kept)"
        )
        disable.add_argument("name", type=utf8_text)
        disable.set_defaults(run=self.set_disabled, disable=True)
        enable = sub.add_parser("enable-merchant", help="accept a merchant's postbacks again")
        enable.add_argument("name", type=utf8_text)
        enable.set_defaults(run=self.set_disabled, disable=False)

        hosts = sub.add_parser(
            "set-merchant-hosts",
            help="replace the hosts a merchant owns: its postbacks attribute orders only to "
            "clicks on links to them",
        )
        hosts.add_argument("name", type=utf8_text)
        hosts.add_argument(
            "hosts",
            nargs="*",
            type=utf8_text,
            metavar="PATTERN",
            help="shop.example.com, *.example.com",
        )
        hosts.add_argument(
            "--any-host", action="store_true",
            help="no hosts: attribute to clicks on any link (as before merchants had hosts)",
        )  # fmt: skip
        hosts.set_defaults(run=self.set_hosts)

        listing = sub.add_parser("list-merchants", help="list merchants and their hosts")
        listing.set_defaults(run=self.list_all)
