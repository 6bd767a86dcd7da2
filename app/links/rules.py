"""A link's rules (issue 19): an ordered list of "when this fact of the click is one of these
values, send it to that destination instead". Pure: validation, normal forms, the JSON form.

One rule is one condition and a destination, as the API and the Postgres column
(``links.rules``, jsonb) and the Redis mirror (``app.links.mirror``) all write it::

    {"when": "country", "in": ["DE", "AT"], "destination": "https://shop.example.com/de"}
    {"when": "param", "name": "utm_source", "in": ["news"], "destination": "https://..."}

``when`` is one of:

- ``country``: ISO 3166-1 alpha-2, stored upper case (``"de"`` is ``"DE"``); codes that mean
  "unknown" (``XX``, ``ZZ``, ``T1``, ...) are refused, since no click has them;
- ``device``: a device type as ``app/dimensions/agent.py`` derives it (``DEVICE_TYPES``),
  lower case;
- ``os``: an OS family as the user-agent parser names it (``"iOS"``, ``"Android"``,
  ``"Windows"``, ``"Mac OS X"``), kept as written, compared case-insensitively;
- ``language``: Accept-Language's first primary subtag (2 or 3 letters), lower case;
- ``param``: the click URL's query parameter ``name`` (as a server decodes it), its first
  non-empty value, decoded and checked as the tracking strings are (``app/edge/params.py``),
  compared exactly.

The first rule that matches wins (the redirect, ``app/edge/rules.py``); none: the link's own
destination. A rule's destination obeys the link's own rules (allow-list, normal form:
``model.validate_destination``). Positions in messages are 0-based JSON paths
(``rules[2].in[0]``); the click records the matched rule 1-based (``clicks.rule``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast, get_args

from app.core.dimension_values import DEVICE_TYPES, NOT_COUNTRIES
from app.core.tracking import value_problem
from app.links.model import LinkError, Rule, RuleKind, echoed, validate_destination

MAX_RULES = 10
MAX_VALUES = 50
# Characters of an OS family (the parser's families are cut at 64: app/dimensions/agent.py)
# and of a query parameter's name; a parameter's value is bounded as a tracking string (128).
MAX_OS_LENGTH = 64
MAX_PARAM_NAME_LENGTH = 64
KINDS: tuple[RuleKind, ...] = get_args(RuleKind)

_KEYS = frozenset({"when", "in", "destination"})
_PARAM_KEYS = _KEYS | {"name"}
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")


def validate_rules(raw: object, allowed_hosts: tuple[str, ...]) -> tuple[Rule, ...]:
    """A caller's rules (decoded JSON: a list of objects) in their stored form. Raises
    ``LinkError`` whose ``field`` is the JSON path at fault (``rules[2].in[0]``) and whose
    message says what is wrong in plain words: not a list, more than ``MAX_RULES``, an
    unknown or missing key, an unknown ``when``, an empty, repeated or bad value, more than
    ``MAX_VALUES`` values, a destination the link itself could not have, a rule that earlier
    rules leave no value to match."""
    if not isinstance(raw, list):
        raise LinkError("must be a list of rules", field="rules")
    if len(raw) > MAX_RULES:
        raise LinkError(f"at most {MAX_RULES} rules per link, got {len(raw)}", field="rules")
    rules = tuple(_rule(item, f"rules[{i}]", allowed_hosts) for i, item in enumerate(raw))
    _refuse_shadowed(rules)
    return rules


def _refuse_shadowed(rules: tuple[Rule, ...]) -> None:
    """A rule all of whose values earlier rules of its kind (and parameter) already match
    could never be chosen (the first match wins): a mistake, refused in words."""
    seen: dict[tuple[str, str | None], dict[str, int]] = {}
    for n, rule in enumerate(rules):
        # OS families match case-insensitively (app/edge/rules.py); other values as stored.
        values = [v.casefold() if rule.when == "os" else v for v in rule.values]
        earlier = seen.setdefault((rule.when, rule.name), {})
        if values and all(v in earlier for v in values):
            before = ", ".join(f"rules[{i}]" for i in sorted({earlier[v] for v in values}))
            words = (f"can never match: {before} match every value of it first (the first "
                     "matching rule wins); remove it or move it up")  # fmt: skip
            raise LinkError(words, field=f"rules[{n}]")
        for value in values:
            earlier.setdefault(value, n)


def _rule(raw: object, at: str, allowed_hosts: tuple[str, ...]) -> Rule:
    if not isinstance(raw, dict):
        raise LinkError('must be an object such as {"when": "country", "in": [...], ...}', field=at)
    when = raw.get("when")
    if when not in KINDS:
        shown = "missing" if when is None else f"{_quoted(when)} is not known"
        raise LinkError(f"{shown}: use one of {', '.join(KINDS)}", field=f"{at}.when")
    allowed = _PARAM_KEYS if when == "param" else _KEYS
    for key in raw:
        if key not in allowed:
            takes = ", ".join(sorted(allowed))
            words = f"unknown key {_quoted(key)} (a {when} rule takes {takes})"
            raise LinkError(words, field=at)
    for key in sorted(allowed):
        if key not in raw:
            raise LinkError("is missing", field=f"{at}.{key}")
    name = _param_name(raw["name"], f"{at}.name") if when == "param" else None
    values = _values(when, raw["in"], f"{at}.in")
    destination = raw["destination"]
    if not isinstance(destination, str):
        raise LinkError("must be a URL (text)", field=f"{at}.destination")
    try:
        destination = validate_destination(destination, allowed_hosts)
    except LinkError as exc:
        raise LinkError(exc.message, field=f"{at}.destination") from None
    return Rule(when, values, destination, name)


def _param_name(raw: object, at: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise LinkError("must be a query parameter's name (non-empty text)", field=at)
    if len(raw) > MAX_PARAM_NAME_LENGTH:
        raise LinkError(f"is longer than {MAX_PARAM_NAME_LENGTH} characters", field=at)
    problem = value_problem(raw)
    if problem:
        raise LinkError(problem, field=at)
    return raw


def _values(when: RuleKind, raw: object, at: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise LinkError("must be a non-empty list of values", field=at)
    if len(raw) > MAX_VALUES:
        raise LinkError(f"at most {MAX_VALUES} values per rule, got {len(raw)}", field=at)
    values: list[str] = []
    for i, value in enumerate(raw):
        normal = _value(when, value, f"{at}[{i}]")
        key = normal.casefold() if when == "os" else normal
        if key in (v.casefold() if when == "os" else v for v in values):
            raise LinkError(f"{_quoted(value)} is listed twice", field=f"{at}[{i}]")
        values.append(normal)
    return tuple(values)


def _value(when: RuleKind, value: object, at: str) -> str:
    """One value in its normal form; raises ``LinkError`` (``field=at``)."""
    if not isinstance(value, str) or not value:
        raise LinkError("must be non-empty text", field=at)
    shown = _quoted(value)
    if when == "country":
        if not (value.isascii() and _COUNTRY.fullmatch(value)):
            raise LinkError(f"{shown} is not a two-letter country code", field=at)
        if value.upper() in NOT_COUNTRIES:
            raise LinkError(f"{shown} stands for an unknown country, never a click's", field=at)
        return value.upper()
    if when == "device":
        if value.lower() not in DEVICE_TYPES:
            words = f"{shown} is not a device type: use {', '.join(DEVICE_TYPES)}"
            raise LinkError(words, field=at)
        return value.lower()
    if when == "language":
        if not (value.isascii() and _LANGUAGE.fullmatch(value)):
            raise LinkError(f"{shown} is not a language: use 2 or 3 letters (en, pt)", field=at)
        return value.lower()
    limit = MAX_OS_LENGTH if when == "os" else None
    if limit is not None and len(value) > limit:
        raise LinkError(f"is longer than {limit} characters", field=at)
    problem = value_problem(value)
    if problem:
        raise LinkError(problem, field=at)
    return value


def _quoted(value: object) -> str:
    """A caller's value as a message repeats it: in double quotes, as JSON writes text."""
    return f'"{echoed(value)}"'


def as_json(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The rules as the API answers them and Postgres and the mirror store them."""
    return [_rule_json(rule) for rule in rules]


def _rule_json(rule: Rule) -> dict[str, Any]:
    found: dict[str, Any] = {"when": rule.when}
    if rule.name is not None:
        found["name"] = rule.name
    found["in"] = list(rule.values)
    found["destination"] = rule.destination
    return found


def from_stored(raw: object) -> tuple[Rule, ...]:
    """Rules as Postgres or the mirror hold them (``as_json``'s form, written after
    ``validate_rules``): their shape is checked, not the allow-list (a link's own destination
    is not checked again on read either). A ``when`` this release does not know (written by
    a newer one during a rolling upgrade) is kept as read, in its place, and never matches
    (``app.edge.rules``): the others keep their positions. Raises ``ValueError`` for what is
    not that shape."""
    if not isinstance(raw, list):
        raise ValueError("rules: not a list")
    return tuple(_stored_rule(item) for item in raw)


def _stored_rule(raw: object) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError("rule: not an object")
    when, values, destination = raw.get("when"), raw.get("in"), raw.get("destination")
    name = raw.get("name")
    if not isinstance(when, str) or not isinstance(destination, str):
        raise ValueError("rule: no kind or no destination")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("rule: values are not a list of text")
    if (name is not None and not isinstance(name, str)) or (when == "param" and name is None):
        raise ValueError("rule: a param rule needs a name")
    return Rule(cast(RuleKind, when), tuple(values), destination, name)
