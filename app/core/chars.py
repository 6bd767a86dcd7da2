"""Characters that no id, reason or tracking string may hold, as one regular-expression
character class: the redirect's parser (``app/edge/params.py``) and the API's ``PRINTABLE``
pattern (``app/api/params.py``) both use it, so a value the API refuses is one the redirect
would never have stored, and the other way round.

Refused, by Unicode general category (the Python's ``unicodedata``):

- ``Cc``: C0 controls, DEL, C1 controls;
- ``Cf``: format characters, invisible but able to change what a report shows: bidi
  embeddings, overrides and isolates (U+202A-202E, U+2066-2069), LRM/RLM/ALM, zero-width
  space, non-joiner and joiner (U+200B-200D), word joiner (U+2060), BOM (U+FEFF), soft hyphen
  (U+00AD), invisible operators, tag characters... (the few visible ones, like the Arabic
  number signs U+0600-0605, go with them: no id needs them);
- ``Zl``, ``Zp``: the line and paragraph separators (U+2028, U+2029), line breaks in disguise;
- letters and marks that draw nothing although not ``Cf`` (Unicode's default-ignorable code
  points outside variation selectors): combining grapheme joiner U+034F, the Hangul fillers
  U+115F, U+1160, U+3164, U+FFA0, Khmer inherent vowels U+17B4, U+17B5.

Accepted: ``Zs`` (spaces: visible as a gap), ``Co`` (private use: a glyph or a box, it moves
nothing), ``Cn`` (unassigned: refusing them would make validity depend on the Python's Unicode
version and refuse next year's emoji; noncharacters are harmless text), variation selectors
(part of emoji and of ideographic text). Surrogates (``Cs``) cannot come out of a UTF-8
decode nor be written in a Rust regular expression (pydantic's engine), so they are left out.

Built once at import (~0.2 s of ``unicodedata`` calls would be too much for every process:
only the planes that hold such characters, 0, 1 and 14, are scanned).
"""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Default-ignorable, invisible, and not Cf: the spoofing favourites.
INVISIBLE_LETTERS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0})
_SCANNED = (range(0x0000, 0x20000), range(0xE0000, 0xF0000))


def refused_code_points() -> list[tuple[int, int]]:
    """The refused code points, as sorted inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for plane in _SCANNED:
        for cp in plane:
            if cp in INVISIBLE_LETTERS or unicodedata.category(chr(cp)) in REFUSED_CATEGORIES:
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1] = (ranges[-1][0], cp)
                else:
                    ranges.append((cp, cp))
    return ranges


def _escape(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


# The inside of a character class, ``\u0000-\u001f\u007f-\u009f\u00ad...``: escapes that
# Python's ``re`` and the Rust ``regex`` crate read alike.
REFUSED_CLASS = "".join(
    _escape(first) if first == last else f"{_escape(first)}-{_escape(last)}"
    for first, last in refused_code_points()
)


def is_refused(char: str) -> bool:
    """The rule itself, one character at a time (for tests and for reading)."""
    return ord(char) in INVISIBLE_LETTERS or unicodedata.category(char) in REFUSED_CATEGORIES


def first_refused(text: str) -> str | None:
    """The first refused character of ``text`` as ``U+XXXX`` (for a message), or None: for
    names people read in reports and on the dashboard, held to the tracking strings' rule."""
    for char in text:
        if is_refused(char):
            return f"U+{ord(char):04X}"
    return None
