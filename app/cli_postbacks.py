"""The operator command ``prune-postbacks``, registered by ``app/cli.py``: apply the postback
retention now (``app/postbacks/retention.py``; every sender also does it hourly).

It deletes the finished deliveries last changed more than ``--days`` days ago (default
``CLICKTRACK_POSTBACK_RETENTION_DAYS``) with their attempts, the events left without any
delivery, and the postbacks received from merchants that long ago, in bounded batches; it
prints how many rows of each went. Safe beside running senders (their batches take turns)
and safe to stop anywhere: what is left goes in the next pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from app.audit.log import cli_actor, record
from app.cli_apikeys import whole_number
from app.core.problems import plural
from app.errors import ClickTrackError
from app.postbacks import retention
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
# The bound of CLICKTRACK_POSTBACK_RETENTION_DAYS (app/settings.py): 100 years.
MAX_DAYS = 36_500

_HELP = (
    "delete finished postback deliveries (with their attempts and events) and received "
    "postbacks older than the retention"
)


class NoRetention(ClickTrackError):
    """No number of days to keep: neither ``--days`` nor the setting gives one."""


def describe(pruned: retention.Pruned, cutoff: datetime) -> str:
    """The command's report, one line."""
    deliveries = "1 delivery" if pruned.deliveries == 1 else f"{pruned.deliveries} deliveries"
    return (
        f"deleted {deliveries} (with {plural(pruned.attempts, 'attempt')}), "
        f"{plural(pruned.events, 'event')} and {plural(pruned.received, 'received postback')} "
        f"from before {cutoff.isoformat(timespec='seconds')}"
    )


@dataclass(frozen=True)
class PostbackCommands:
    connect: Connect

    async def prune(self, settings: Settings, args: argparse.Namespace) -> None:
        days = args.days if args.days is not None else settings.postback_retention_days
        if not days:
            raise NoRetention(
                "no retention: pass --days N or set CLICKTRACK_POSTBACK_RETENTION_DAYS"
            )
        cutoff = datetime.now(UTC) - timedelta(days=days)
        conn = await self.connect(settings)
        try:
            pruned = await retention.prune(conn, cutoff)
            if pruned.total:  # nothing deleted, nothing changed: no entry
                # After the batches, each its own transaction: the entry says what went.
                await record(
                    conn,
                    cli_actor(),
                    "postback_log.prune",
                    "postback_log",
                    cutoff.isoformat(timespec="seconds"),
                    after={"deleted_before": cutoff, **pruned.by_table()},
                )
        finally:
            await conn.close()
        print(describe(pruned, cutoff))

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the command to the CLI's parser."""
        prune = sub.add_parser("prune-postbacks", help=_HELP, description=_HELP)
        prune.add_argument(
            "--days",
            type=whole_number(1, MAX_DAYS),
            default=None,
            help=f"keep this many days (1 to {MAX_DAYS}; default "
            "CLICKTRACK_POSTBACK_RETENTION_DAYS)",
        )
        prune.set_defaults(run=self.prune)
