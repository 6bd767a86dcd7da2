"""The sender process (``python -m app.sender``): delivers the outbox's events to publishers'
endpoints. Its ``__init__`` re-exports nothing."""
