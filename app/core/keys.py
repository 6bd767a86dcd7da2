"""Every Redis key and channel name, in one place. All live under ``settings.key_prefix``.

Clicks are spread over ``stream_shards`` streams. A shard's stream, its dead letters and its
parked entries carry the shard number as a Redis Cluster hash tag (``ct:clicks:{3}``), so
that all three live in one slot (the flusher sets entries aside and acks them in one MULTI;
``redrive`` moves them back in one script call) while different shards spread over the
cluster's nodes.

A click cap's counters (one per cap and window) carry their publisher as a hash tag
(``ct:cap:{p42}:7:20261201``): the redirect's one script call checks and counts every cap of
a click, and all of them are its publisher's, so they live in one slot.

The duplicate windows (``seen_by_session``, ``seen_by_ip``) are checked a few hundred per
script call. On one Redis their names carry no tag (as before clusters were supported). On a
cluster (``tag`` given) a session's window carries its stream shard's tag
(``session_window_tag``: a flusher judges one shard, every click of a session is in one
shard, so its calls go to one slot, the node of the shard's stream), and an address's window
carries one of ``IP_WINDOW_BUCKETS`` tags by a hash of the address (``ip_window_tag``: every
click of an address, whatever its session and shard, is counted in one window). See
docs/reliability.md, "Duplicate windows on a cluster".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# Slots the per-address windows spread over on a cluster: enough to spread over the
# primaries, few enough that a batch's checks make few script calls.
IP_WINDOW_BUCKETS = 64


@dataclass(frozen=True)
class RedisKeys:
    prefix: str
    shard: int = 0

    def for_shard(self, shard: int) -> RedisKeys:
        return RedisKeys(self.prefix, shard)

    @property
    def clicks_stream(self) -> str:
        return f"{self.prefix}:clicks:{{{self.shard}}}"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.prefix}:clicks:dead:{{{self.shard}}}"

    @property
    def parked_stream(self) -> str:
        """Records of a major version the flusher does not read, kept for one that does."""
        return f"{self.prefix}:clicks:parked:{{{self.shard}}}"

    @property
    def consumer_group(self) -> str:
        return "flushers"

    @property
    def links_changed_channel(self) -> str:
        return f"{self.prefix}:links:changed"

    def link(self, code: str) -> str:
        return f"{self.prefix}:link:{code}"

    def seen_by_session(self, link_id: int, session_id: str, tag: str = "") -> str:
        """Recent clicks of one session on one link (duplicate detection). ``tag``: on a
        cluster, ``session_window_tag``; else empty."""
        return f"{self.prefix}:seen:s:{tag}{link_id}:{session_id}"

    def seen_by_ip(self, link_id: int, ip: str, tag: str = "") -> str:
        """Recent clicks from one IP on one link (duplicate detection); ``ip`` is the
        click's ``ip_key`` (a keyed hash of the full address) or, in older records, its
        stored ``ip``. ``tag``: on a cluster, ``ip_window_tag(ip)``; else empty."""
        return f"{self.prefix}:seen:ip:{tag}{link_id}:{ip}"

    @property
    def session_window_tag(self) -> str:
        """The hash tag of this shard's session windows on a cluster: the stream's."""
        return f"{{{self.shard}}}:"

    @staticmethod
    def ip_window_tag(ip: str) -> str:
        """The hash tag of an address's windows on a cluster: one of IP_WINDOW_BUCKETS."""
        return f"{{ip{zlib.crc32(ip.encode()) % IP_WINDOW_BUCKETS}}}:"

    def dashboard_session(self, session_id: str) -> str:
        """A signed-in dashboard session (the API key's id, never the key)."""
        return f"{self.prefix}:dash:{session_id}"

    def cap_clicks(self, publisher_id: int, cap_id: int, window: str) -> str:
        """The clicks counted by click cap ``cap_id`` of ``publisher_id`` in the window that
        starts on ``window`` (its first day in the period time zone, ``YYYYMMDD``)."""
        return f"{self.prefix}:cap:{{p{publisher_id}}}:{cap_id}:{window}"
