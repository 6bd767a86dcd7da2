"""A link's rules (issue 19): what is accepted and in which normal form, what is refused and
in which words (the place in JSON-path form, then the reason)."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from app.core.dimension_values import DEVICE_TYPES
from app.dimensions.agent import DeviceType
from app.links.model import LinkError, Rule
from app.links.rules import (
    MAX_RULES,
    MAX_VALUES,
    as_json,
    from_stored,
    validate_rules,
)

HOSTS = ("example.com", "*.example.com")
DE = "https://shop.example.com/de"


def rule(when: str, values: object, destination: object = DE, **more: Any) -> dict[str, Any]:
    return {"when": when, "in": values, "destination": destination, **more}


def test_each_kind_in_its_normal_form() -> None:
    rules = validate_rules(
        [
            rule("country", ["de", "AT"]),
            rule("device", ["Mobile", "tablet"]),
            rule("os", ["iOS", "Mac OS X"]),
            rule("language", ["PT", "en"]),
            rule("param", ["news", "Mail Out"], name="utm_source"),
        ],
        HOSTS,
    )
    assert rules == (
        Rule("country", ("DE", "AT"), DE),
        Rule("device", ("mobile", "tablet"), DE),
        Rule("os", ("iOS", "Mac OS X"), DE),
        Rule("language", ("pt", "en"), DE),
        Rule("param", ("news", "Mail Out"), DE, "utm_source"),
    )


def test_the_destination_is_normalised_as_the_links_own() -> None:
    [only] = validate_rules([rule("country", ["DE"], "HTTPS://Shop.Example.com:443")], HOSTS)
    assert only.destination == "https://shop.example.com/"


def test_no_rules_is_an_empty_list() -> None:
    assert validate_rules([], HOSTS) == ()


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"when": "country"}, "rules", "must be a list of rules"),
        ([rule("country", ["DE"])] * (MAX_RULES + 1), "rules", "at most 10 rules per link"),
        (["country"], "rules[0]", "must be an object"),
        ([{"in": ["DE"], "destination": DE}], "rules[0].when", "missing: use one of country"),
        ([rule("city", ["Berlin"])], "rules[0].when", '"city" is not known'),
        ([rule("country", ["DE"], extra=1)], "rules[0]", 'unknown key "extra"'),
        ([rule("country", ["DE"], name="x")], "rules[0]", 'unknown key "name"'),
        ([{"when": "country", "in": ["DE"]}], "rules[0].destination", "is missing"),
        ([rule("param", ["news"])], "rules[0].name", "is missing"),
        ([rule("param", ["news"], name="")], "rules[0].name", "non-empty text"),
        ([rule("param", ["news"], name="a" * 65)], "rules[0].name", "longer than 64"),
        ([rule("param", ["news"], name="a\u200bb")], "rules[0].name", "invisible character"),
        ([rule("country", [])], "rules[0].in", "must be a non-empty list"),
        ([rule("country", "DE")], "rules[0].in", "must be a non-empty list"),
        ([rule("param", ["v"] * 51, name="p")], "rules[0].in", f"at most {MAX_VALUES} values"),
        ([rule("country", [7])], "rules[0].in[0]", "must be non-empty text"),
        ([rule("country", [""])], "rules[0].in[0]", "must be non-empty text"),
        ([rule("country", ["DEU"])], "rules[0].in[0]", '"DEU" is not a two-letter country code'),
        ([rule("country", ["D3"])], "rules[0].in[0]", "is not a two-letter country code"),
        ([rule("country", ["ÄB"])], "rules[0].in[0]", "is not a two-letter country code"),
        ([rule("country", ["xx"])], "rules[0].in[0]", "stands for an unknown country"),
        ([rule("country", ["DE", "de"])], "rules[0].in[1]", '"de" is listed twice'),
        ([rule("device", ["phone"])], "rules[0].in[0]", '"phone" is not a device type'),
        ([rule("os", ["ios", "iOS"])], "rules[0].in[1]", "listed twice"),
        ([rule("os", ["x" * 65])], "rules[0].in[0]", "longer than 64 characters"),
        ([rule("language", ["pt-BR"])], "rules[0].in[0]", "is not a language"),
        ([rule("param", ["x" * 129], name="p")], "rules[0].in[0]", "longer than 128"),
        ([rule("param", ["a\tb"], name="p")], "rules[0].in[0]", "control or invisible"),
        ([rule("country", ["DE"], 42)], "rules[0].destination", "must be a URL"),
        ([rule("country", ["DE"], "ftp://example.com/")], "rules[0].destination", "http"),
        (
            [rule("country", ["DE"]), rule("device", ["mobile"], "https://evil.test/")],
            "rules[1].destination",
            "host 'evil.test' is not allowed",
        ),
    ],
)
def test_bad_rules_are_refused_in_words(raw: object, field: str, words: str) -> None:
    with pytest.raises(LinkError) as caught:
        validate_rules(raw, HOSTS)
    assert caught.value.field == field
    assert words in caught.value.message
    assert caught.value.describe().startswith(f"{field}: ")


def test_the_message_of_the_issue() -> None:
    raw = [rule("device", ["mobile"]), rule("os", ["iOS"]), rule("country", ["DEU"])]
    with pytest.raises(LinkError) as caught:
        validate_rules(raw, HOSTS)
    assert caught.value.describe() == 'rules[2].in[0]: "DEU" is not a two-letter country code'


def test_a_long_value_is_echoed_cut() -> None:
    with pytest.raises(LinkError) as caught:
        validate_rules([rule("country", ["x" * 1000])], HOSTS)
    assert len(caught.value.message) < 150


def test_the_json_form_reads_back() -> None:
    rules = validate_rules(
        [rule("param", ["news"], name="utm_source"), rule("country", ["DE"])], HOSTS
    )
    assert as_json(rules) == [
        {"when": "param", "name": "utm_source", "in": ["news"], "destination": DE},
        {"when": "country", "in": ["DE"], "destination": DE},
    ]
    assert from_stored(as_json(rules)) == rules
    assert validate_rules(as_json(rules), HOSTS) == rules  # the API answers what it takes


@pytest.mark.parametrize(
    "stored",
    [
        {},
        [1],
        [{"when": 1, "in": [], "destination": DE}],
        [rule("param", ["a"])],
        [rule("os", [1])],
    ],
)
def test_stored_rules_of_another_shape_raise(stored: object) -> None:
    with pytest.raises(ValueError):
        from_stored(stored)


def test_the_device_types_are_those_the_user_agent_parser_gives() -> None:
    """app/core/dimension_values.py's list and app/dimensions/agent.py's type are one set."""
    assert DEVICE_TYPES == get_args(DeviceType)


def test_a_stored_rule_of_a_kind_not_known_yet_is_kept_in_its_place() -> None:
    """Written by a newer release during a rolling upgrade: read as is (it never matches in
    the redirect: tests/unit/test_edge_rules.py), the others keep their positions."""
    stored = [rule("referrer", ["news.example.com"]), rule("country", ["DE"])]
    rules = from_stored(stored)
    assert [r.when for r in rules] == ["referrer", "country"]
    assert as_json(rules) == stored


SHOP = "https://shop.example.com/"


@pytest.mark.parametrize(
    ("rules", "field", "words"),
    [
        (  # the same rule twice (found by a user's check of the API)
            [{"when": "device", "in": ["mobile"], "destination": SHOP + "a"}] * 2,
            "rules[1]",
            "can never match: rules[0] match every value of it first",
        ),
        (  # every value taken by two earlier rules
            [
                {"when": "country", "in": ["DE"], "destination": SHOP + "a"},
                {"when": "country", "in": ["AT", "CH"], "destination": SHOP + "b"},
                {"when": "country", "in": ["ch", "de"], "destination": SHOP + "c"},
            ],
            "rules[2]",
            "rules[0], rules[1] match every value",
        ),
        (  # OS families match in any case
            [
                {"when": "os", "in": ["iOS"], "destination": SHOP + "a"},
                {"when": "os", "in": ["IOS"], "destination": SHOP + "b"},
            ],
            "rules[1]",
            "can never match",
        ),
        (  # the same parameter's values
            [
                {"when": "param", "name": "s", "in": ["x", "y"], "destination": SHOP + "a"},
                {"when": "param", "name": "s", "in": ["y"], "destination": SHOP + "b"},
            ],
            "rules[1]",
            "can never match",
        ),
    ],
)
def test_a_rule_earlier_rules_leave_nothing_to_match_is_refused(
    rules: list[dict[str, object]], field: str, words: str
) -> None:
    with pytest.raises(LinkError) as caught:
        validate_rules(rules, HOSTS)
    assert caught.value.field == field
    assert words in caught.value.message


def test_rules_that_overlap_only_in_part_are_kept() -> None:
    """A rule with one value no earlier rule takes can still match; other kinds and other
    parameters never shadow it."""
    rules = [
        {"when": "country", "in": ["DE"], "destination": SHOP + "a"},
        {"when": "country", "in": ["DE", "AT"], "destination": SHOP + "b"},
        {"when": "language", "in": ["de"], "destination": SHOP + "c"},
        {"when": "param", "name": "s", "in": ["x"], "destination": SHOP + "d"},
        {"when": "param", "name": "t", "in": ["x"], "destination": SHOP + "e"},
    ]
    assert len(validate_rules(rules, HOSTS)) == 5
