"""Accept-Language header -> the client's first language, as a primary subtag. Pure.

RFC 9110 §12.5.4: a list of language ranges (RFC 4647 §2.1: ``1*8ALPHA *("-" 1*8alphanum)``
or ``*``), each with an optional weight ``;q=`` from 0 to 1 (at most three decimals, §12.4.2;
missing = 1). The first language is the one of highest weight, the earliest of equal weights.

Kept: the primary language subtag only, lower case (``pt-BR`` -> ``pt``, ``zh-Hant-TW`` ->
``zh``): reports group better by ``pt`` than by each region, and the region is the country
dimension's job. A primary subtag must be 2 or 3 letters (ISO 639); grandfathered
``i-``/``x-`` tags and longer reserved subtags are skipped. Skipped too: ``*`` (it names no
language), items of weight 0 (RFC 9110: "not acceptable") and malformed items; ``None``
when nothing is left.
"""

from __future__ import annotations

import re

# Browsers send fewer than ten items; reading no further bounds the work on a crafted header.
MAX_ITEMS = 32

_RANGE = re.compile(r"([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_WEIGHT = re.compile(r"[qQ][ \t]*=[ \t]*(.*)", re.DOTALL)


def first_language(accept_language: str) -> str | None:
    """``accept_language`` (the header's text, any) -> the primary subtag of its first
    language in lower case (``"en"``, ``"pt"``), or ``None``."""
    best: str | None = None
    best_weight = 0.0
    for item in accept_language.split(",", MAX_ITEMS)[:MAX_ITEMS]:
        language, weight = _parse_item(item)
        if language is not None and weight > best_weight:
            best, best_weight = language, weight
    return best


def _parse_item(item: str) -> tuple[str | None, float]:
    """One list item (``" pt-BR;q=0.8"``) -> (primary subtag, weight); (None, 0) when it
    names no language or cannot be read."""
    tag, *parameters = item.split(";")
    match = _RANGE.fullmatch(tag.strip(" \t"))
    if match is None:
        return None, 0.0
    primary = match.group(1)
    if not 2 <= len(primary) <= 3:
        return None, 0.0
    weight = 1.0
    for parameter in parameters:
        found = _WEIGHT.fullmatch(parameter.strip(" \t"))
        if found is None:
            continue  # another parameter: RFC 9110 defines none, so it is ignored
        value = found.group(1).strip(" \t")
        if _QVALUE.fullmatch(value) is None:
            return None, 0.0
        weight = float(value)
    return primary.lower(), weight
