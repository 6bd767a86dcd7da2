"""The flusher: a separate process that moves clicks from the Redis stream to Postgres."""

from app.flusher.loop import Flusher, Stats

__all__ = ["Flusher", "Stats"]
