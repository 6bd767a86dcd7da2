"""The publisher's postbacks as the dashboard reads and sends them again, through
``app.postbacks``'s store, delivery log and outbox (never the HTTP API).

What the page shows is what ``GET /api/v1/postbacks/endpoints`` and ``GET
/api/v1/postbacks/deliveries`` answer a publisher key: the session's own publisher only. A
network's session sees its own endpoints and deliveries, not its members' (as every other
dashboard page does: a member's are for that member's own key, or the network's key through
the API with ``publisher_id``).

A replay runs as the API's does (``app.postbacks.deliveries.replay`` and
``replay_matching``, with the same audit entry, ``postback_delivery.replay``, in the same
transaction); a test event as ``POST …/endpoints/{id}/test`` (``outbox.emit_test``, no audit
entry, as there). Another publisher's delivery or endpoint answers like a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from app.accounts.publishers import get_publisher
from app.audit.log import Actor, api_actor, record
from app.core.resources import Resources
from app.dashboard.inputs import BadQuery
from app.dashboard.sessions import DashboardSession
from app.errors import NotFound
from app.postbacks import deliveries as log
from app.postbacks import outbox, store
from app.postbacks.deliveries import Delivery, DeliveryQuery
from app.postbacks.endpoints import Endpoint
from app.postbacks.events import EventType
from app.traffic.days import zone_name

PAGE_SIZE = 25  # deliveries per page: each carries its attempts
STATUSES = ("pending", "delivered", "failed")
EVENTS = tuple(e.value for e in EventType)
MAX_DIGITS = 18  # an id of the API's range (below 2**63), as the links' cursor reads it

# The outcomes a form's redirect names (``?done=``): a replay, a delivery that was pending
# already, a replay of the failed ones, a test event.
DONE = ("replayed", "pending", "replayed_failed", "test")


@dataclass(frozen=True)
class LogFilter:
    """The log's filters (None: any), as the API's ``status``, ``event``, ``endpoint_id``."""

    status: str | None = None
    event: str | None = None
    endpoint_id: int | None = None

    def fields(self) -> dict[str, str]:
        """The filters as the page's query fields (``status``, ``event``, ``endpoint``),
        those set only."""
        found = {"status": self.status, "event": self.event}
        if self.endpoint_id is not None:
            found["endpoint"] = str(self.endpoint_id)
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class PostbacksView:
    publisher_name: str
    csrf: str
    tz: tzinfo  # the period time zone: times are shown on its clock
    zone: str
    endpoints: list[Endpoint]  # oldest first, never a secret
    deliveries: list[Delivery]  # newest first, each with its attempts
    filters: LogFilter
    before: int | None  # the cursor this page was read with (None: the newest)
    next_before: int | None  # the cursor of the next (older) page; None on the last


def number_of(text: str | None, field: str, what: str) -> int | None:
    """A positive id or count of a query or form field (``what``: its words in the
    message); None when left out or empty."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS or int(text) < 1:
        raise BadQuery(f"expected {what}: a whole number from 1", field=field)
    return int(text)


def count_of(text: str | None) -> int | None:
    """A count of an outcome (``count``, 0 included); None when left out."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        raise BadQuery("expected a count: a whole number", field="count")
    return int(text)


def _choice(text: str | None, field: str, known: tuple[str, ...]) -> str | None:
    if not text:
        return None
    if text not in known:
        raise BadQuery(f"expected one of {', '.join(known)}", field=field)
    return text


def filter_of(status: str | None, event: str | None, endpoint: str | None) -> LogFilter:
    """The filters asked for (empty: any). ``BadQuery`` (400) for a status, an event or an
    endpoint id that is not one."""
    return LogFilter(
        _choice(status, "status", STATUSES),
        _choice(event, "event", EVENTS),
        number_of(endpoint, "endpoint", "an endpoint's id"),
    )


def done_of(text: str | None) -> str | None:
    """The outcome a page's ``done`` names (set by the dashboard's own redirect)."""
    return _choice(text, "done", DONE)


def _actor(session: DashboardSession) -> Actor:
    return api_actor(session.key_id, "publisher", session.publisher_id, via="dashboard")


def _check_endpoint(endpoints: list[Endpoint], filters: LogFilter) -> None:
    """An endpoint filter must name one of the publisher's endpoints (a hand-made address
    could name any number): said, not answered with an empty log."""
    wanted = filters.endpoint_id
    if wanted is not None and all(e.id != wanted for e in endpoints):
        ids = ", ".join(str(e.id) for e in endpoints) or "none yet"
        raise BadQuery(
            f"you have no endpoint {wanted}; your endpoints are: {ids}", field="endpoint"
        )


async def postbacks_view(
    resources: Resources, session: DashboardSession, filters: LogFilter, before: int | None
) -> PostbacksView:
    """The page: the publisher's endpoints and ``PAGE_SIZE`` deliveries matching
    ``filters``, older than delivery ``before`` (None: the newest)."""
    owner = session.publisher_id
    query = DeliveryQuery(owner, filters.endpoint_id, filters.status, filters.event)
    async with resources.pool.acquire() as conn:
        publisher = await get_publisher(conn, owner)
        assert publisher is not None  # a key's publisher is never deleted
        endpoints = await store.list_endpoints(conn, owner)
        _check_endpoint(endpoints, filters)
        found = await log.list_deliveries(conn, query, before=before, limit=PAGE_SIZE)
    tz = resources.settings.period_tz
    return PostbacksView(
        publisher_name=publisher.name,
        csrf=session.csrf,
        tz=tz,
        zone=zone_name(tz),
        endpoints=endpoints,
        deliveries=found,
        filters=filters,
        before=before,
        next_before=found[-1].id if len(found) == PAGE_SIZE else None,
    )


async def replay_one(resources: Resources, session: DashboardSession, delivery_id: int) -> bool:
    """Queue the publisher's delivery ``delivery_id`` again (same event id), with its audit
    entry; False when it was pending already (nothing written). ``NotFound`` when it is
    not the publisher's."""
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await log.get_delivery(conn, delivery_id)
        if found is None or found.publisher_id != session.publisher_id:
            raise NotFound(f"you have no delivery {delivery_id}")
        if not await log.replay(conn, found.id):
            return False
        before, after = log.replay_states(found)
        await record(
            conn,
            _actor(session),
            log.REPLAY_ACTION,
            log.REPLAY_TARGET,
            found.id,
            before=before,
            after=after,
            publisher_id=found.publisher_id,
        )
    return True


async def replay_failed(resources: Resources, session: DashboardSession, filters: LogFilter) -> int:
    """Queue again every failed delivery of the publisher matching ``filters``' endpoint and
    event (at most ``MAX_REPLAY``, oldest first), with one audit entry as the API's
    ``POST /postbacks/replay``; return how many."""
    owner = session.publisher_id
    query = DeliveryQuery(owner, filters.endpoint_id, "failed", filters.event)
    async with resources.pool.acquire() as conn, conn.transaction():
        _check_endpoint(await store.list_endpoints(conn, owner), filters)
        replayed = await log.replay_matching(conn, query)
        if replayed:
            await record(
                conn,
                _actor(session),
                log.REPLAY_ACTION,
                log.REPLAY_TARGET,
                "matching",
                after=log.replay_matching_state(query, replayed),
                publisher_id=owner,
            )
    return replayed


async def send_test(resources: Resources, session: DashboardSession, endpoint_id: int) -> int:
    """Queue a ``test`` event (made-up order values) for the publisher's endpoint; return
    its delivery's id. ``NotFound`` when the endpoint is not the publisher's."""
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await store.get_endpoint(conn, endpoint_id)
        if found is None or found.publisher_id != session.publisher_id:
            raise NotFound(f"you have no endpoint {endpoint_id}")
        return await outbox.emit_test(conn, found.id, found.publisher_id)
