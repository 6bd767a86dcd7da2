"""Small asyncio helpers shared by the background tasks."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another error.

    redis-py may catch the CancelledError of a task being stopped and raise a connection or
    timeout error instead; a retry loop that catches those would then never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
