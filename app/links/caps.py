"""The click caps a link carries to the redirect (docs/commissions.md, "Click caps at the
redirect"): read from Postgres with the link, for the mirror record (``app.links.mirror``).

A link carries every enabled click cap that may apply to one of its clicks: its own link caps,
its publisher's publisher-wide click caps, and its publisher's campaign caps (which the redirect
matches against the click's ``cn``). The caps themselves are managed by ``app.caps``; this
module only reads them, so that the link store and the redirect need nothing of that package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.db import Conn

PERIODS = frozenset(("day", "month", "calculation_period"))


@dataclass(frozen=True, slots=True)
class ClickCap:
    """One click cap as the redirect needs it. ``cap``: clicks per window; ``period``: "day",
    "month" or "calculation_period" (windows in the period time zone: ``app.caps.windows``);
    ``campaign``: the ``cn`` it counts, None for a link or publisher-wide cap;
    ``fallback_url``: where a click over it goes, None for wherever it would have gone."""

    cap_id: int
    cap: int
    period: str
    campaign: str | None = None
    fallback_url: str | None = None


# The caps of the link ``l`` (a row of links in the enclosing query): a jsonb array of
# [id, cap, period, campaign, fallback_url], link caps first, then campaign caps, then
# publisher-wide ones (the first full one chooses the fallback), and the latest change of any
# of them, disabled ones included, in µs (what orders two writes of the link's record: 0 for
# a link whose publisher never had a click cap). Shared by the read-through and publish_caps.
CAPS_OF_LINK = """
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(
                   jsonb_build_array(c.id, c.cap, c.period, c.campaign, c.fallback_url)
                   ORDER BY c.link_id IS NULL, c.campaign IS NULL, c.id
               ) FILTER (WHERE c.disabled_at IS NULL) AS caps,
               coalesce(max(extract(epoch FROM greatest(c.created_at, c.updated_at,
                                                        c.disabled_at)) * 1000000), 0)::int8
                   AS caps_us
        FROM caps c
        WHERE c.publisher_id = l.publisher_id AND c.metric = 'clicks'
          AND (c.link_id IS NULL OR c.link_id = l.id)
    ) k ON true"""


def caps_from_stored(raw: object) -> tuple[ClickCap, ...]:
    """Caps as Postgres (``CAPS_OF_LINK``) or the mirror hold them: a list of [id, cap,
    period, campaign, fallback_url]. A period this release does not know (a newer one wrote
    it) is kept, and never counted by the redirect. Raises ``ValueError`` for another shape."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("caps: not a list")
    return tuple(_cap(item) for item in raw)


def _cap(item: object) -> ClickCap:
    if not (isinstance(item, list) and len(item) >= 5):
        raise ValueError("caps: an item is not [id, cap, period, campaign, fallback_url]")
    cap_id, cap, period, campaign, fallback = item[:5]
    if not (_is_int(cap_id) and _is_int(cap) and cap >= 0 and isinstance(period, str)):
        raise ValueError("caps: bad id, cap or period")
    if not all(v is None or isinstance(v, str) for v in (campaign, fallback)):
        raise ValueError("caps: bad campaign or fallback")
    return ClickCap(cap_id, cap, period, campaign, fallback)


def caps_json(caps: Sequence[ClickCap]) -> list[list[Any]]:
    """The caps in the form the mirror stores them (``caps_from_stored`` reads it)."""
    return [[c.cap_id, c.cap, c.period, c.campaign, c.fallback_url] for c in caps]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def click_caps_for_links(
    conn: Conn, link_ids: Sequence[int]
) -> dict[int, tuple[tuple[ClickCap, ...], int]]:
    """link id -> (its enabled click caps in the order they are judged, the latest change of
    its caps in µs since the epoch) for each of ``link_ids`` that exists."""
    rows = await conn.fetch(
        f"SELECT l.id, k.caps, k.caps_us FROM links l {CAPS_OF_LINK} WHERE l.id = ANY($1::int8[])",
        list(link_ids),
    )
    return {row["id"]: (caps_from_stored(_json(row["caps"])), row["caps_us"]) for row in rows}


def _json(raw: str | None) -> object:
    """jsonb arrives as text; SQL NULL (no enabled cap) is no caps."""
    return None if raw is None else orjson.loads(raw)
