"""The flusher process (``python -m app.flusher``): stream → Postgres. Re-exports nothing:
import ``app.flusher.loop`` and friends by name."""
