"""Quality flags from the request alone (pure, cheap): robots, prefetch, frames, HEAD.

Flags never block a redirect; they keep a click out of billable counts.
"""

from __future__ import annotations

import re

from app.events import Flag

_BOT_USER_AGENT = re.compile(
    r"bot\b|crawl|spider|slurp|curl/|wget/|python-requests|python-urllib|python-httpx|httpclient|"
    r"go-http-client|okhttp|headless",
    re.IGNORECASE,
)


def request_flags(
    method: str,
    user_agent: str | None,
    fetch_dest: str | None,
    purpose: str | None,
) -> Flag:
    flags = Flag(0)
    if method == "HEAD":
        flags |= Flag.head
    if not user_agent or _BOT_USER_AGENT.search(user_agent):
        flags |= Flag.bot
    if fetch_dest is not None and fetch_dest.lower() == "iframe":
        flags |= Flag.iframe
    if purpose is not None and "prefetch" in purpose.lower():
        flags |= Flag.prefetch
    return flags
