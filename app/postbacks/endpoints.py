"""A publisher's endpoint: where its events go and which. Pure rules.

- ``postback``: a GET to a URL template whose macros are filled (``templates.py``), as
  traffic sources expect.
- ``webhook``: a POST of the event as JSON, signed with the endpoint's secret
  (``signing.py``); its URL takes no macros.

An endpoint subscribes to one or more of ``events.SUBSCRIBABLE``; a disabled one gets
nothing new (its deliveries already queued wait until it is enabled again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.errors import InvalidInput
from app.postbacks.events import SUBSCRIBABLE, EventType
from app.postbacks.templates import check_url

MAX_ENDPOINTS = 20  # per publisher


class EndpointKind(StrEnum):
    postback = "postback"
    webhook = "webhook"


class EndpointError(InvalidInput):
    """An endpoint cannot be created or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as listed, never its secret."""

    id: int
    publisher_id: int
    kind: EndpointKind
    url: str
    events: tuple[EventType, ...]
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def check_events(names: Iterable[str]) -> tuple[EventType, ...]:
    """The events named, each once, in the order of ``SUBSCRIBABLE``. Raises
    ``EndpointError`` for none, or for a name that is not an event one may subscribe to."""
    wanted = set()
    for name in names:
        if name not in SUBSCRIBABLE:
            known = ", ".join(SUBSCRIBABLE)
            raise EndpointError(f"unknown event {name!r}; the events are {known}", field="events")
        wanted.add(EventType(name))
    if not wanted:
        raise EndpointError("subscribe to at least one event", field="events")
    return tuple(e for e in SUBSCRIBABLE if e in wanted)


def check_endpoint_url(kind: EndpointKind, url: str) -> str:
    """``url`` when it suits an endpoint of ``kind`` (``templates.check_url``)."""
    return check_url(url, macros_allowed=kind is EndpointKind.postback)
