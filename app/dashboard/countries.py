"""English names of countries, for the traffic breakdown: from the time zone database the
app already needs for its period time zone (``iso3166.tab``, public domain, "the usual
English name" of each ISO 3166-1 alpha-2 code), found where ``zoneinfo`` finds the zones (the
system's tzdata, or the ``tzdata`` package when installed). No new dependency: where the file
is missing, a country is shown by its code alone."""

from __future__ import annotations

import functools
import zoneinfo
from importlib import resources as package_files
from pathlib import Path

TABLE = "iso3166.tab"


def _read(text: str) -> dict[str, str]:
    """``code<TAB>name`` lines, ``#`` comments skipped."""
    names = {}
    for line in text.splitlines():
        code, tab, name = line.partition("\t")
        if tab and not code.startswith("#") and len(code) == 2:
            names[code] = name.strip()
    return names


def _table_text() -> str | None:
    """The table's text: first along ``zoneinfo.TZPATH`` (as the zones are looked up), then
    the ``tzdata`` package; None when neither has it."""
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / TABLE
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:
        return (package_files.files("tzdata.zoneinfo") / TABLE).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None


@functools.cache
def names() -> dict[str, str]:
    """Code (``DE``) -> English name (``Germany``); empty when no table was found. Read once."""
    text = _table_text()
    return _read(text) if text is not None else {}


def country_name(code: str) -> str:
    """``Germany (DE)``; the code alone when its name is not known."""
    name = names().get(code.upper())
    return f"{name} ({code})" if name else code
