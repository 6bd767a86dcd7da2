"""Every Redis key and channel name, in one place. All live under ``settings.key_prefix``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    @property
    def clicks_stream(self) -> str:
        return f"{self.prefix}:clicks"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.prefix}:clicks:dead"

    @property
    def consumer_group(self) -> str:
        return "flushers"

    @property
    def links_changed_channel(self) -> str:
        return f"{self.prefix}:links:changed"

    def link(self, code: str) -> str:
        return f"{self.prefix}:link:{code}"
