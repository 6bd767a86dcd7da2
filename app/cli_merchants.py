"""The operator commands for merchants, registered by ``app/cli.py``: create one (with the
hosts it owns), rotate its postback secret, set its hosts, list them all.

A merchant's postbacks attribute orders only to clicks on links to its hosts; a merchant
with none attributes to any link (how every merchant worked before they had hosts), and the
commands say so with a warning."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from app.accounts import merchants
from app.accounts.merchants import Merchant, MerchantError
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]


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
            merchant, secret = await merchants.create_merchant(conn, args.name, args.host)
        finally:
            await conn.close()
        print(f"merchant {merchant.id} created: {merchant.name}; hosts: {describe_hosts(merchant)}")
        print("its postback secret, shown only now:")
        print(secret)
        warn_any_host(merchant)

    async def rotate(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            merchant, secret = await merchants.rotate_secret(conn, args.name)
        finally:
            await conn.close()
        print(f"merchant {merchant.id} has a new postback secret (the old one no longer works):")
        print(secret)

    async def set_hosts(self, settings: Settings, args: argparse.Namespace) -> None:
        if bool(args.hosts) == args.any_host:
            raise MerchantError(
                "name the hosts the merchant's links point at (shop.example.com, "
                "*.example.com), or pass --any-host alone to let it attribute to any link",
                field="hosts",
            )
        conn = await self.connect(settings)
        try:
            merchant = await merchants.set_hosts(conn, args.name, args.hosts)
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
            print(f"merchant {merchant.id}: {merchant.name}; hosts: {describe_hosts(merchant)}")
        print(f"{len(found)} merchants, {sum(not m.hosts for m in found)} without hosts")

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the commands to the CLI's parser."""
        create = sub.add_parser(
            "create-merchant", help="create a merchant and print its postback secret"
        )
        create.add_argument("name")
        create.add_argument(
            "--host", action="append", default=[], metavar="PATTERN",
            help="a host its links point at: shop.example.com, or *.example.com for any "
            "host below it; repeat for several (none: any host, with a warning)",
        )  # fmt: skip
        create.set_defaults(run=self.create)

        rotate = sub.add_parser("rotate-merchant-secret", help="give a merchant a new secret")
        rotate.add_argument("name")
        rotate.set_defaults(run=self.rotate)

        hosts = sub.add_parser(
            "set-merchant-hosts",
            help="replace the hosts a merchant owns: its postbacks attribute orders only to "
            "clicks on links to them",
        )
        hosts.add_argument("name")
        hosts.add_argument(
            "hosts", nargs="*", metavar="PATTERN", help="shop.example.com, *.example.com"
        )
        hosts.add_argument(
            "--any-host", action="store_true",
            help="no hosts: attribute to clicks on any link (as before merchants had hosts)",
        )  # fmt: skip
        hosts.set_defaults(run=self.set_hosts)

        listing = sub.add_parser("list-merchants", help="list merchants and their hosts")
        listing.set_defaults(run=self.list_all)
