"""The operator commands for caps (docs/commissions.md, "Caps"), registered by
``app/cli.py``: ``caps`` lists a publisher's caps with what each used in its current window,
``add-cap`` creates one, ``set-cap`` changes its limit or fallback, ``disable-cap`` and
``enable-cap``. Every change is in the audit log (actor ``cli``); a click cap's change is
published to the redirect after the commit, as the API does. Limits are read and printed
as the API shows them: clicks, orders, or commission in US dollars (``125.50``)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import asyncpg

from app.audit.log import cli_actor, record
from app.caps import clicks
from app.caps import model as caps_model
from app.caps import store as caps_store
from app.caps.model import Cap, CapError, CapMetric, CapRequest
from app.caps.windows import CapPeriod
from app.cli_apikeys import utf8_text
from app.core.db import Conn
from app.core.keys import RedisKeys
from app.core.redis import REDIS_UNAVAILABLE, create_redis
from app.errors import NotFound
from app.links.mirror import MIRROR_TTL_S
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]
METRICS = [metric.value for metric in CapMetric]
PERIODS = [period.value for period in CapPeriod]


def describe(found: Cap, used: int | None, settings: Settings) -> str:
    """One line: id, what it counts, its limit and window, its usage now, its state."""
    window = caps_store.current_window(found, datetime.now(UTC), settings.period_tz)
    scope = {
        caps_model.CapScope.publisher: "all traffic",
        caps_model.CapScope.link: f"link {found.link_code}",
        caps_model.CapScope.campaign: f"campaign {found.campaign!r}",
    }[found.scope]
    shown = "?" if used is None else caps_model.cap_shown(found.metric, used)
    line = (
        f"cap {found.id}: publisher {found.publisher_id}, {found.metric} per {found.period} "
        f"({scope}): {shown} of {caps_model.cap_shown(found.metric, found.cap)} used "
        f"from {window.start} to before {window.end}"
    )
    if found.fallback_url is not None:
        line += f", over it to {found.fallback_url}"
    return line + ("" if found.enabled else ", disabled")


def amount(text: str) -> Decimal:
    """An argparse type: a number as typed (``125.50``); ``add-cap`` checks it as the API."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return number


async def _record(conn: Conn, verb: str, before: Cap | None, after: Cap) -> None:
    await record(
        conn,
        cli_actor(),
        f"cap.{verb}",
        "cap",
        after.id,
        before=None if before is None else caps_model.audit_state(before),
        after=caps_model.audit_state(after),
        publisher_id=after.publisher_id,
    )


@dataclass(frozen=True)
class CapCommands:
    connect: Connect

    async def _publish(self, conn: Conn, settings: Settings, found: Cap) -> None:
        """A click cap's change, told to the redirect after the commit (as the API does);
        Redis failing is said, the change stays."""
        if found.metric is not CapMetric.clicks:
            return
        redis = create_redis(settings, "cli")
        keys = RedisKeys(settings.key_prefix)
        try:
            mirror = clicks.LinkMirror(redis, keys, settings.link_mirror_legacy_writes)
            await clicks.publish_caps(conn, mirror, found.publisher_id)
        except REDIS_UNAVAILABLE as exc:
            print(
                f"saved, but not told to the redirect ({exc}): it applies the change "
                f"within {MIRROR_TTL_S} s"
            )
        finally:
            await redis.aclose()

    async def _print(self, conn: Conn, settings: Settings, found: list[Cap]) -> None:
        now = datetime.now(UTC)
        redis = (
            create_redis(settings, "cli")
            if any(c.metric is CapMetric.clicks for c in found)
            else None
        )
        try:
            keys = RedisKeys(settings.key_prefix)
            used = await caps_store.caps_used(conn, redis, keys, found, now, settings.period_tz)
        finally:
            if redis is not None:
                await redis.aclose()
        for cap in found:
            print(describe(cap, used.get(cap.id), settings))

    async def list_caps(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            metric = None if args.metric is None else CapMetric(args.metric)
            where = caps_store.CapFilter(metric=metric, enabled=None if args.all else True)
            await caps_store.require_publisher(conn, args.publisher_id)
            found = await caps_store.list_caps(conn, [args.publisher_id], where)
            await self._print(conn, settings, found)
        finally:
            await conn.close()
        print(f"{len(found)} caps" + ("" if args.all else " enabled (--all: disabled too)"))

    async def add_cap(self, settings: Settings, args: argparse.Namespace) -> None:
        for name, values in (("metric", METRICS), ("period", PERIODS)):
            if getattr(args, name) is None:
                raise CapError(f"required: --{name} {' | '.join(values)}", field=name)
        request = CapRequest(
            args.metric, args.period, args.cap, args.link, args.campaign, args.fallback_url
        )
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                caps_model.check_scope(args.link, args.campaign)
                link_id = None
                if args.link is not None:
                    link_id = await caps_store.link_of(conn, args.publisher_id, args.link)
                spec = caps_model.new_cap(
                    request, args.publisher_id, link_id, settings.allowed_hosts
                )
                created = await caps_store.create_cap(conn, spec)
                await _record(conn, "create", None, created)
            await self._publish(conn, settings, created)
            await self._print(conn, settings, [created])
        finally:
            await conn.close()

    async def change(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await caps_store.get_cap(conn, args.cap_id, for_update=True)
                if before is None:
                    raise NotFound(f"no cap {args.cap_id}")
                limit = None if args.cap is None else caps_model.cap_units(before.metric, args.cap)
                fallback: str | caps_store.Keep | None = caps_store.KEEP
                if args.no_fallback:
                    fallback = None
                elif args.fallback_url is not None:
                    fallback = caps_model.check_fallback(
                        before.metric, args.fallback_url, settings.allowed_hosts
                    )
                after = await caps_store.update_cap(
                    conn, before, cap=limit, fallback_url=fallback, enabled=args.enabled
                )
                if after != before:
                    await _record(conn, args.verb, before, after)
            if after != before:
                await self._publish(conn, settings, after)
            await self._print(conn, settings, [after])
        finally:
            await conn.close()

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the commands to the CLI's parser; ``number`` reads a whole number >= 1."""
        listing = sub.add_parser("caps", help="list a publisher's caps and their usage now")
        listing.add_argument("--publisher-id", type=number, required=True)
        listing.add_argument("--metric", choices=METRICS, default=None)
        listing.add_argument("--all", action="store_true", help="disabled caps too")
        listing.set_defaults(run=self.list_caps)

        add = sub.add_parser(
            "add-cap", help="cap a publisher's clicks, orders or commission per window"
        )
        add.add_argument("--publisher-id", type=number, required=True)
        # Checked by the command (exit 1 in words when missing), as every other field is.
        add.add_argument("--metric", choices=METRICS, default=None, help="required")
        add.add_argument("--period", choices=PERIODS, default=None, help="required")
        add.add_argument(
            "--cap", type=amount, required=True, help="clicks, orders, or US dollars (125.50)"
        )
        add.add_argument("--link", type=utf8_text, default=None, help="a link's code only")
        add.add_argument("--campaign", type=utf8_text, default=None, help="a cn value only")
        add.add_argument(
            "--fallback-url", type=utf8_text, default=None, help="click caps: over it, go here"
        )
        add.set_defaults(run=self.add_cap)

        change = sub.add_parser("set-cap", help="change a cap's limit or fallback")
        change.add_argument("cap_id", type=number)
        change.add_argument("--cap", type=amount, default=None, help="the new limit")
        fallback = change.add_mutually_exclusive_group()
        fallback.add_argument("--fallback-url", type=utf8_text, default=None)
        fallback.add_argument("--no-fallback", action="store_true", help="clear the fallback")
        change.set_defaults(run=self.change, verb="update", enabled=None)

        for verb, enabled, words in (
            ("disable", False, "stop a cap counting and declining (its counts are kept)"),
            ("enable", True, "let a disabled cap count again"),
        ):
            step = sub.add_parser(f"{verb}-cap", help=words)
            step.add_argument("cap_id", type=number)
            step.set_defaults(
                run=self.change,
                verb=verb,
                enabled=enabled,
                cap=None,
                fallback_url=None,
                no_fallback=False,
            )
