"""The operator command for the audit log, registered by ``app/cli.py``: ``list-audit``
prints entries newest first, one line each (time in UTC, actor, action, target, publisher)
followed by what changed, with filters and a cursor (``--before-id``) for older pages."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from app.audit.log import AuditEntry, list_entries
from app.cli_apikeys import utf8_text
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]
MAX_LIMIT = 500


def _json(value: Any) -> str:
    """A recorded value as JSON text (what the entry holds: strings quoted, null for none)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def describe(entry: AuditEntry) -> str:
    """An entry as printed: a line of who, what and when, then what changed (the fields that
    differ, or the whole state of a target created or deleted)."""
    owner = "" if entry.publisher_id is None else f", publisher {entry.publisher_id}"
    head = (
        f"#{entry.id} {entry.at:%Y-%m-%d %H:%M:%S}Z {entry.actor} ({entry.actor_role}) "
        f"{entry.action} {entry.target_kind} {entry.target_id}{owner}"
    )
    before, after = entry.before, entry.after
    if before is None or after is None:
        return f"{head}\n    before: {_json(before)}\n    after:  {_json(after)}"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    lines = [f"    {key}: {_json(before.get(key))} -> {_json(after.get(key))}" for key in changed]
    return "\n".join([head, *lines] if lines else [head, "    (no field changed)"])


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_LIMIT}: {text!r}")
    return value


@dataclass(frozen=True)
class AuditCommands:
    connect: Connect

    async def list_audit(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            page = await list_entries(
                conn,
                publisher_id=args.publisher_id,
                target_kind=args.target_kind,
                target_id=args.target_id,
                action=args.action,
                before_id=args.before_id,
                limit=args.limit,
            )
        finally:
            await conn.close()
        for entry in page:
            print(describe(entry))
        print(f"{len(page)} entries, newest first")
        if len(page) == args.limit:
            print(f"older ones may follow: --before-id {page[-1].id}")

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the command to the CLI's parser; ``number`` reads a whole number >= 1."""
        listing = sub.add_parser(
            "list-audit", help="list the audit log: who changed what and when, newest first"
        )
        listing.add_argument(
            "--target-kind", type=utf8_text, default=None, help="api_key, merchant, plan, ..."
        )
        listing.add_argument(
            "--target-id", type=utf8_text, default=None, help="the target's id, as listed"
        )
        listing.add_argument(
            "--action", type=utf8_text, default=None, help="merchant.disable, plan.put, ..."
        )
        listing.add_argument("--publisher-id", type=number, default=None)
        listing.add_argument("--before-id", type=number, default=None, help="older entries only")
        listing.add_argument(
            "--limit", type=_limit, default=50, help=f"at most this many (1 to {MAX_LIMIT})"
        )
        listing.set_defaults(run=self.list_audit)
