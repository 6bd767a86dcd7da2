"""Quality flags from the request alone: pure and cheap, so they run on the hot path.

Flags never block a redirect; they keep a click out of billable counts. The costlier checks
(user agents against the crawler list, duplicates over time) run in the flusher
(``app.flusher.quality``); ``docs/architecture.md`` says why.
"""

from __future__ import annotations

from app.clicks.record import Flag
from app.settings import Settings


def enabled_flags(settings: Settings) -> Flag:
    """The flags the operator wants raised; ``params_invalid`` is always on."""
    enabled = Flag.params_invalid
    for flag, on in (
        (Flag.bot, settings.flag_bots),
        (Flag.prefetch, settings.flag_prefetch),
        (Flag.iframe, settings.flag_iframe),
        (Flag.head, settings.flag_head),
        (Flag.duplicate, settings.duplicate_window_s > 0 or settings.ip_clicks_per_minute > 0),
    ):
        if on:
            enabled |= flag
    return enabled


# Plain ints: IntFlag arithmetic goes through the enum machinery, microseconds per request.
_HEAD = int(Flag.head)
_BOT = int(Flag.bot)
_IFRAME = int(Flag.iframe)
_PREFETCH = int(Flag.prefetch)


def request_flags(
    method: str,
    user_agent: str | None,
    fetch_dest: str | None,
    purpose: str | None,
) -> int:
    """The ``Flag`` bits that the request alone shows, as an int."""
    flags = 0
    if method == "HEAD":
        flags |= _HEAD
    if not user_agent or user_agent.isspace():
        flags |= _BOT  # browsers always send one
    if fetch_dest is not None and fetch_dest.lower() == "iframe":
        flags |= _IFRAME
    if purpose is not None and "prefetch" in purpose.lower():
        flags |= _PREFETCH
    return flags
