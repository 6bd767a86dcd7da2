"""A link's rules as the redirect evaluates them (app/edge/rules.py): first match wins, each
fact in its form (country upper case, OS any case, language subtag, a parameter decoded),
and a fact learnt only when a rule needs it."""

from __future__ import annotations

from functools import partial

import pytest

from app.edge.linkcache import RedirectTarget, _split_location
from app.edge.params import first_value
from app.edge.rules import EdgeRule, EdgeRules, RuleFacts
from app.links.mirror import EdgeLink
from app.links.model import Rule
from app.links.rules import from_stored
from tests.unit.test_dimensions_agent import CASES

A, B, C, D = (f"https://example.com/{x}" for x in "abcd")
THREE = (
    Rule("country", ("DE",), A),
    Rule("device", ("mobile",), B),
    Rule("param", ("news",), C, "utm_source"),
)
GERMAN = "81.91.161.1"  # DENIC's network, Frankfurt: DE in the registries' data
DUTCH = "193.0.6.139"  # RIPE NCC, Amsterdam: NL
DEFAULT = object()


def compiled(rules: tuple[Rule, ...]) -> EdgeRules:
    return EdgeRules(rules, partial(_split_location, param="aff_click_id"))


def choose(
    rules: tuple[Rule, ...],
    *,
    country: str | None = None,
    address: str | None = None,
    agent: str | None = None,
    language: str | None = None,
    query: bytes = b"",
) -> tuple[str | None, int | None, str | None]:
    headers = {}
    if agent is not None:
        headers[b"user-agent"] = CASES[agent][0]
    if language is not None:
        headers[b"accept-language"] = language
    where, position, found = RuleFacts().choose(
        compiled(rules), DEFAULT, country, address, headers, query
    )
    if isinstance(where, EdgeRule):
        assert where.position == position
        return where.location("ID"), position, found
    assert where is DEFAULT and position is None
    return None, None, found


@pytest.mark.parametrize(
    ("request_facts", "expected"),
    [
        ({"address": GERMAN, "agent": "iPhone Safari"}, (f"{A}?aff_click_id=ID", 1)),
        ({"address": DUTCH, "agent": "iPhone Safari"}, (f"{B}?aff_click_id=ID", 2)),
        ({"address": DUTCH, "agent": "Pixel Chrome"}, (f"{B}?aff_click_id=ID", 2)),
        ({"address": DUTCH, "agent": "iPad Safari"}, (None, None)),
        ({"address": DUTCH, "agent": "iPad Safari", "query": b"utm_source=news"}, (C, 3)),
        ({"address": DUTCH, "agent": "Windows Chrome", "query": b"af=1&utm_source=x"}, (None,) * 2),
        ({"address": GERMAN, "agent": "Googlebot", "query": b"utm_source=news"}, (A, 1)),
        ({"address": None, "agent": None, "query": b"utm%5Fsource=n%65ws"}, (C, 3)),
    ],
)  # fmt: skip
def test_the_first_rule_that_matches_wins(
    request_facts: dict[str, object], expected: tuple[str | None, int | None]
) -> None:
    location, position, _ = choose(THREE, **request_facts)  # type: ignore[arg-type]
    want_location, want_position = expected
    assert position == want_position
    if want_location is None:
        assert location is None
    else:
        assert location is not None and location.startswith(want_location.split("?")[0])
        assert location.endswith("aff_click_id=ID")


def test_the_country_given_wins_and_is_handed_back() -> None:
    """A trusted header's country (given) is judged, not the address's."""
    assert choose(THREE, country="DE", address=DUTCH)[1:] == (1, "DE")
    assert choose(THREE, country="FR", address=GERMAN)[1:] == (None, "FR")


def test_the_country_is_resolved_only_for_a_country_rule() -> None:
    assert choose(THREE, address=GERMAN)[2] == "DE"
    no_country = (Rule("device", ("desktop",), A),)
    assert choose(no_country, address=GERMAN, agent="Windows Chrome")[1:] == (1, None)


def test_an_address_without_a_country_matches_no_country_rule() -> None:
    assert choose(THREE, address="10.0.0.1", agent="Windows Chrome")[1:] == (None, None)


@pytest.mark.parametrize("os", ["iOS", "ios", "IOS"])
def test_os_families_compare_in_any_case(os: str) -> None:
    rules = (Rule("os", (os,), A), Rule("os", ("Mac OS X",), B))
    assert choose(rules, agent="iPhone Safari")[1] == 1
    assert choose(rules, agent="macOS Safari")[1] == 2
    assert choose(rules, agent="Windows Chrome")[1] is None
    assert choose(rules)[1] is None  # no user agent: no OS


def test_languages_compare_by_their_first_primary_subtag() -> None:
    rules = (Rule("language", ("pt",), A), Rule("language", ("en",), B))
    assert choose(rules, language="pt-BR,en;q=0.5")[1] == 1
    assert choose(rules, language="de, en;q=0.9")[1] is None
    assert choose(rules, language="en-GB;q=0.9, pt;q=0.1")[1] == 2


@pytest.mark.parametrize(
    ("query", "position"),
    [
        (b"utm_source=news", 1),
        (b"utm_source=&utm_source=news", 1),  # the first non-empty value
        (b"utm_source=mail&utm_source=news", None),
        (b"utm_source=News", None),  # exact values
        (b"utm_source=new%73", 1),
        (b"utm+source=news", None),
        (b"utm_source=n%00ews", None),  # dropped as a tracking value would be: no match
        (b"utm_sourcex=news", None),
        (b"", None),
    ],
)
def test_a_param_rule_reads_the_first_non_empty_value(query: bytes, position: int | None) -> None:
    assert choose((Rule("param", ("news",), A, "utm_source"),), query=query)[1] == position


def test_first_value_decodes_names_and_values() -> None:
    assert first_value(b"a=1&utm%20source=x+y", b"utm source") == "x y"
    assert first_value(b"q=%C3%A9", b"q") == "é"
    assert first_value(b"q=%FF", b"q") is None  # not UTF-8
    assert first_value(b"q", b"q") is None


def test_a_link_without_rules_has_none_to_evaluate() -> None:
    link = EdgeLink(1, "abc", 2, "https://example.com/", True, None)
    assert RedirectTarget(link, "aff_click_id").rules is None
    with_rules = EdgeLink(1, "abc", 2, "https://example.com/", True, None, 0, THREE)
    target = RedirectTarget(with_rules, "aff_click_id")
    assert target.rules is not None
    assert [rule.location("X") for rule in target.rules.rules] == [
        f"{A}?aff_click_id=X", f"{B}?aff_click_id=X", f"{C}?aff_click_id=X"
    ]  # fmt: skip


def test_a_rules_destination_keeps_its_query_and_fragment() -> None:
    rules = (Rule("country", ("DE",), "https://example.com/de?aff_click_id=old&x=1#top"),)
    location, _, _ = choose(rules, country="DE")
    assert location == "https://example.com/de?x=1&aff_click_id=ID#top"


def test_a_rule_of_a_kind_not_known_yet_never_matches_and_keeps_the_positions() -> None:
    rules = from_stored(
        [
            {"when": "referrer", "in": ["news.example.com"], "destination": A},
            {"when": "country", "in": ["DE"], "destination": B},
        ]
    )
    assert choose(rules, country="DE")[1] == 2
    assert choose(rules[:1], country="DE")[1] is None


def test_a_huge_user_agent_is_parsed_as_the_record_keeps_it() -> None:
    """Its first 512 characters: the text the flusher judges, and a bounded parse."""
    ua = CASES["iPhone Safari"][0] + " " + "x" * 100_000
    rules = compiled((Rule("device", ("mobile",), A),))
    where = RuleFacts().choose(rules, None, None, None, {b"user-agent": ua}, b"")
    assert where[1] == 1
