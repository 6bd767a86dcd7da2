"""A link's rules on the hot path (issue 19): compiled once per cache fill, evaluated per
click with no round trip.

``EdgeRules`` is a link's rules (``app.links.rules``) as the redirect evaluates them: per
rule a frozenset of its values in the form the click's fact takes, the query parameter's
name as bytes, and its destination already split around the click id, as the link's own
(``app.edge.linkcache.RedirectTarget``). ``RuleFacts`` holds one worker's caches of the
facts that cost something to learn and evaluates: the first rule that matches wins.

Each fact is learnt only when a rule of the link needs it, and at most once per click:

- the country: the trusted header's, or the privacy modes' (``app.edge.privacy``), given by
  the caller; else, only when the link has a country rule, the registry data embedded in
  ``iptocc`` (~0.1 µs); the country used is handed back, to be carried in the record;
- device type and OS: the user agent (its first ``MAX_USER_AGENT`` characters, as the record
  keeps it) parsed by ``app.dimensions.agent`` (~70 µs a user agent never seen), through a
  per-worker LRU cache (~1 µs a hit), at the first device or OS rule;
- language: Accept-Language's first primary subtag (``app.dimensions.language``; the
  header cut as the record keeps it), cached;
- a query parameter: its first non-empty value, decoded and checked as the tracking strings
  are (``app.edge.params.first_value``); a value the redirect would drop matches nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TypeVar

from app.clicks.record import MAX_ACCEPT_LANGUAGE, MAX_USER_AGENT
from app.dimensions.agent import UNKNOWN_AGENT, Agent, parse_agent
from app.dimensions.country import registry_country
from app.dimensions.language import first_language
from app.edge.params import first_value
from app.links.model import Rule

# Distinct user agents and Accept-Language values each worker keeps parsed: an entry is
# ~0.5 KB, so the agents' cache is a few MB at most.
AGENT_CACHE_SIZE = 10_000
LANGUAGE_CACHE_SIZE = 1_000

Where = TypeVar("Where")
_COUNTRY, _DEVICE, _OS, _LANGUAGE, _PARAM, _UNKNOWN = range(6)
_KINDS = {"country": _COUNTRY, "device": _DEVICE, "os": _OS, "language": _LANGUAGE, "param": _PARAM}


class EdgeRule:
    """One rule, compiled. ``position``: 1-based, as the click records it."""

    __slots__ = ("kind", "location_head", "location_tail", "name", "position", "values")

    def __init__(self, rule: Rule, position: int, location: tuple[str, str]) -> None:
        # A kind a newer release wrote (app.links.rules.from_stored) never matches.
        self.kind = _KINDS.get(rule.when, _UNKNOWN)
        self.position = position
        # OS families compare case-insensitively; every other value is in the click's form.
        values = (v.casefold() for v in rule.values) if self.kind == _OS else rule.values
        self.values = frozenset(values)
        self.name = (rule.name or "").encode()
        self.location_head, self.location_tail = location

    def location(self, click_id: str) -> str:
        return self.location_head + click_id + self.location_tail


class EdgeRules:
    """A link's rules, compiled: ``split`` turns a destination into the Location's two parts
    around the click id (``linkcache._split_location``). ``needs_country`` is True when one
    rule is a country rule: only then may the evaluation resolve a country."""

    __slots__ = ("needs_country", "rules")

    def __init__(self, rules: tuple[Rule, ...], split: Callable[[str], tuple[str, str]]) -> None:
        self.rules = tuple(
            EdgeRule(rule, position, split(rule.destination))
            for position, rule in enumerate(rules, start=1)
        )
        self.needs_country = any(rule.kind == _COUNTRY for rule in self.rules)


class RuleFacts:
    """One worker's evaluation of rules, with its caches of parsed user agents and languages
    (built once, with the ``Redirect``)."""

    def __init__(self) -> None:
        self._agent: Callable[[str], Agent] = functools.lru_cache(AGENT_CACHE_SIZE)(parse_agent)
        self._language: Callable[[str], str | None] = functools.lru_cache(LANGUAGE_CACHE_SIZE)(
            first_language
        )

    def choose(
        self,
        rules: EdgeRules,
        default: Where,
        country: str | None,
        address: str | None,
        headers: Mapping[bytes, str],
        query_string: bytes,
    ) -> tuple[Where | EdgeRule, int | None, str | None]:
        """(where the click goes: the first rule of ``rules`` it matches, else ``default``;
        that rule's 1-based position, else None; the click's country). ``country``: the one
        already known (trusted header, privacy modes), else resolved here from ``address``
        (normalised text) when a rule needs it; ``headers``: the request's, by lower-case
        name (``user-agent``, ``accept-language`` are read). Never raises."""
        if rules.needs_country and country is None and address is not None:
            country = registry_country(address)
        agent: Agent | None = None
        language: str | None = None
        language_known = False
        for rule in rules.rules:
            kind = rule.kind
            fact: str | None
            if kind == _COUNTRY:
                fact = country
            elif kind == _DEVICE or kind == _OS:
                if agent is None:
                    # Cut as the record keeps it: the flusher judges the same text, and a
                    # huge header can neither cost a long parse nor fill the cache.
                    user_agent = headers.get(b"user-agent", "")[:MAX_USER_AGENT]
                    agent = self._agent(user_agent) if user_agent else UNKNOWN_AGENT
                fact = agent.device if kind == _DEVICE else agent.os
                if fact is not None and kind == _OS:
                    fact = fact.casefold()
            elif kind == _LANGUAGE:
                if not language_known:
                    accept_language = headers.get(b"accept-language", "")[:MAX_ACCEPT_LANGUAGE]
                    language = self._language(accept_language) if accept_language else None
                    language_known = True
                fact = language
            elif kind == _PARAM:
                fact = first_value(query_string, rule.name)
            else:
                continue
            if fact is not None and fact in rule.values:
                return rule, rule.position, country
        return default, None, country
