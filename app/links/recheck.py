"""Stored destinations against today's rules: after an upgrade that tightened them, the links
written before are found, rewritten in their normal form, or listed for the operator.

``python -m app.cli check-links [--fix]`` runs it. Destinations are normalised when a link
is written (``app.links.urls``); a link stored by an older release may hold a Unicode host,
non-ASCII text or more than ``MAX_DESTINATION_BYTES`` once encoded. The redirect normalises
what it can on load, but only here is the stored row rewritten (and the API shows what is
sent) or a destination that can never be sent as it was meant reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.links import mirror, store
from app.links.model import LinkError, validate_destination

BATCH = 500


@dataclass
class Recheck:
    """What ``recheck_destinations`` found: ``normalised``: (code, stored, normal form),
    rewritten when ``fixed``; ``refused``: (code, stored, why it cannot be sent as is)."""

    checked: int = 0
    normalised: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    fixed: bool = False


async def recheck_destinations(
    pool: Pool,
    redis: aioredis.Redis,
    keys: RedisKeys,
    allowed_hosts: tuple[str, ...],
    *,
    fix: bool,
    legacy_mirror: bool = False,
) -> Recheck:
    """Check every stored destination with ``validate_destination``; with ``fix``, rewrite
    each one whose normal form differs (one transaction per link, announced to the redirect
    workers like any change). A refused destination is never changed: the operator edits
    or disables its link."""
    found = Recheck(fixed=fix)
    after = 0
    while True:
        rows = await pool.fetch(
            "SELECT id, code, destination FROM links WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            BATCH,
        )
        if not rows:
            return found
        after = rows[-1]["id"]
        found.checked += len(rows)
        for row in rows:
            code, stored = row["code"], row["destination"]
            try:
                normal = validate_destination(stored, allowed_hosts)
            except LinkError as exc:
                found.refused.append((code, stored, exc.message))
                continue
            if normal == stored:
                continue
            found.normalised.append((code, stored, normal))
            if fix:
                async with pool.acquire() as conn, conn.transaction():
                    link = await store.set_destination(conn, row["id"], stored, normal)
                if link is not None:
                    await mirror.publish_change(redis, keys, link, legacy=legacy_mirror)
