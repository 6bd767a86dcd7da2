"""The rule a tracking string (``af``, ``cn``, ``cv``, ``dp``) obeys, in one place.

The redirect (``app/edge/params.py``) reads values by it and the link builder
(``app/links/builder.py``) writes them by it; it lives here, below both, because ``app.edge``
already imports ``app.links`` and the reverse would be a package cycle.
"""

from __future__ import annotations

import re

from app.core.chars import REFUSED_CLASS

# Characters once decoded (not bytes): the column width reports and exports allow for.
MAX_VALUE_LENGTH = 128
# Control and invisible characters (C0, DEL, C1, format, separators...): see app/core/chars.py.
_REFUSED = re.compile(f"[{REFUSED_CLASS}]")


def value_problem(text: str) -> str | None:
    """Why the redirect would drop ``text`` as a tracking value, in plain words (``"is longer
    than 128 characters"``), or ``None`` when it would keep it."""
    if len(text) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    if _REFUSED.search(text):
        return "contains a control or invisible character"
    return None
