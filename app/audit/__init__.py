"""The audit log of administrative changes (``log.py``)."""
