"""The program's calendar rule every package shares: a calculation period starts on the
10th of a month (seed: the program's rules; ``app/money/periods.py`` builds its periods on
it). Pure."""

from __future__ import annotations

from datetime import date

PERIOD_START_DAY = 10


def period_start(local: date) -> date:
    """The first day of the calculation period holding the local date ``local``."""
    if local.day >= PERIOD_START_DAY:
        return local.replace(day=PERIOD_START_DAY)
    previous = local.replace(day=1).toordinal() - 1
    return date.fromordinal(previous).replace(day=PERIOD_START_DAY)
