"""Query and body parameters shared by several routes."""

from __future__ import annotations

# Text sent for an id, a reason or a tracking string: Postgres text cannot hold NUL, and no id
# has a use for control characters.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
