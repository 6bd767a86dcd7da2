"""Payout overrides, pure: their validation in words and the precedence rule between an
override's entries, its network's and the plan's (``app/money/overrides.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money.commission import order_commission
from app.money.overrides import (
    Override,
    OverrideError,
    OverrideVersion,
    RateSource,
    base_rate,
    check_against_plan,
    override_from_data,
    specificity,
)
from app.money.periods import Period
from app.money.plan import DEFAULT_PLAN_FILE, Plan, plan_from_data, read_plan_file

D = Decimal
DEFAULT = read_plan_file(DEFAULT_PLAN_FILE)
PERIOD = Period.of(2016, 10)
# A small category tree: every key a table may name, and the categories orders may have.
KEYS = ["*", "toys", "toys/dolls", "toys/dolls/porcelain", "toys/cars", "books", "books/maps"]
CATEGORIES = [k for k in KEYS if k != "*"] + ["toys/dolls/rag", "garden", "books/maps/old"]


def plan_with(standard: dict[str, Decimal], new_buyer: dict[str, Decimal] | None = None) -> Plan:
    return plan_from_data(
        {
            "name": "test",
            "effective_from": "2016-09-10",
            "minimum_rate": "8",
            "standard_rates": {"*": "8", **{k: str(v) for k, v in standard.items()}},
            "new_buyer_rates": {k: str(v) for k, v in (new_buyer or {}).items()},
            "incentive_tiers": [{"min_sales": "0", "bonus": "0"}],
        }
    )


def version(
    rates: dict[str, Any], new_buyer: dict[str, Any] | None = None, owner: int = 1
) -> OverrideVersion:
    found = Override(rates=rates, new_buyer_rates=new_buyer or {})
    return OverrideVersion(owner, PERIOD, found)


def test_an_override_for_a_category_wins_over_the_plans_star() -> None:
    found = base_rate(DEFAULT, [version({"toys": "11"})], "toys/cars", False)
    assert (found.rate, found.source, found.entry) == (D(11), RateSource.override, "toys")
    assert base_rate(DEFAULT, [version({"toys": "11"})], "books", False).rate == 8


def test_the_most_specific_entry_wins_across_override_and_plan() -> None:
    plan = plan_with({"toys": D(9), "toys/dolls": D(10)})
    override = [version({"toys": "12"})]
    assert base_rate(plan, override, "toys/cars", False).rate == 12  # override's toys
    doll = base_rate(plan, override, "toys/dolls/porcelain", False)
    assert (doll.rate, doll.source) == (D(10), RateSource.plan)  # the plan's is more specific
    star = base_rate(plan, [version({"*": "9"})], "toys/cars", False)
    assert (star.rate, star.source) == (D(9), RateSource.plan)  # plan's toys beats override *


def test_equal_specificity_the_own_override_then_the_networks_then_the_plan() -> None:
    plan = plan_with({"toys": D(9)})
    own, network = version({"toys": "13"}, owner=5), version({"toys": "12"}, owner=2)
    assert base_rate(plan, [own, network], "toys", False).version == own
    assert base_rate(plan, [network], "toys", False).rate == 12
    # A network's more specific entry beats a member's broader one.
    deeper = version({"toys/cars": "15"}, owner=2)
    assert base_rate(plan, [own, deeper], "toys/cars", False).rate == 15


def test_new_buyers_take_the_new_buyer_entries_never_below_the_standard_rate() -> None:
    # The override's toys = 20 beats Table 3's '*' = 14: a new buyer gets 20, not less.
    found = base_rate(DEFAULT, [version({"toys": "20"})], "toys", True)
    assert (found.rate, found.new_buyer_rate, found.source) == (D(20), False, RateSource.override)
    special = base_rate(DEFAULT, [version({"toys": "20"}, {"toys": "22"})], "toys", True)
    assert (special.rate, special.new_buyer_rate) == (D(22), True)
    # Excluded categories keep the standard rate, whatever an override says for new buyers.
    tablet = base_rate(DEFAULT, [version({}, {"*": "30"})], "computer-office/tablets", True)
    assert (tablet.rate, tablet.source) == (D(8), RateSource.plan)


def test_the_bonus_stays_the_plans() -> None:
    earned = order_commission(
        DEFAULT, D("100.00"), "toys", False, D(400000), [version({"toys": "11"})]
    )
    assert (earned.rate.base, earned.rate.bonus, earned.amount) == (D(11), D(2), D("13.00"))
    assert earned.detail()["rate_source"] == "override"
    assert earned.detail()["override_from"] == "2016-10"


@given(
    st.sampled_from(CATEGORIES),
    st.booleans(),
    st.dictionaries(st.sampled_from(KEYS[1:]), st.integers(8, 30)),
)
def test_without_overrides_it_is_the_plans_rate(
    category: str, new_buyer: bool, table: dict[str, int]
) -> None:
    plan = plan_with({k: D(v) for k, v in table.items()}, {"*": D(30)})
    found = base_rate(plan, [], category, new_buyer)
    expected = plan.rate(category, new_buyer, D(0))
    assert (found.rate, found.new_buyer_rate, found.source) == (
        expected.base,
        expected.new_buyer_rate,
        RateSource.plan,
    )


def _covering(table: dict[str, int], category: str) -> list[str]:
    return [k for k in table if k == "*" or category == k or category.startswith(k + "/")]


@given(
    st.sampled_from(CATEGORIES),
    st.dictionaries(st.sampled_from(KEYS[1:]), st.integers(8, 30)),
    st.dictionaries(st.sampled_from(KEYS), st.integers(8, 30)),
    st.dictionaries(st.sampled_from(KEYS), st.integers(8, 30)),
)
def test_precedence_most_specific_then_own_then_network_then_plan(
    category: str, plan_table: dict[str, int], own: dict[str, int], network: dict[str, int]
) -> None:
    plan = plan_with({k: D(v) for k, v in plan_table.items()})
    layers = [version(t, owner=o) for t, o in ((own, 5), (network, 2)) if t]
    found = base_rate(plan, layers, category, False)
    tables: list[tuple[OverrideVersion | None, dict[str, int]]] = [
        (v, {k: int(r) for k, r in v.override.rates.items()}) for v in layers
    ]
    tables.append((None, {"*": 8, **plan_table}))
    depth = max(specificity(k) for _, t in tables for k in _covering(t, category))
    assert specificity(found.entry) == depth
    # The first layer (own, network, plan) with an entry at that depth decides.
    first = next(
        (v, t) for v, t in tables if any(specificity(k) == depth for k in _covering(t, category))
    )
    assert found.version == first[0]
    assert found.rate == first[1][found.entry]
    assert found.source is (RateSource.plan if first[0] is None else RateSource.override)


@given(
    st.sampled_from(CATEGORIES),
    st.dictionaries(st.sampled_from(KEYS), st.integers(8, 30)),
    st.dictionaries(st.sampled_from(KEYS), st.integers(8, 40)),
)
def test_a_new_buyer_never_earns_less_than_a_standard_buyer(
    category: str, rates: dict[str, int], new_buyer: dict[str, int]
) -> None:
    try:
        layer = version(rates, new_buyer)
    except ValueError:
        return  # refused: a new buyer's rate below the override's own standard rate
    standard = base_rate(DEFAULT, [layer], category, False)
    assert base_rate(DEFAULT, [layer], category, True).rate >= standard.rate


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"rates": {"Toys": "9"}}, "rates: 'Toys' is not a category"),
        ({"rates": {"toys": "7.5"}}, "below the program's minimum of 8 %"),
        ({"rates": {"toys": "101"}}, "rates.toys"),
        ({"rates": {"toys": "9.12345"}}, "rates.toys"),
        ({}, "needs at least one entry"),
        ({"rates": {"toys": "12"}, "new_buyer_rates": {"toys": "10"}}, "may not be lower"),
        ({"rates": {"toys": "9"}, "rate": {}}, "rate"),
    ],
)
def test_validation_in_words(body: dict[str, Any], words: str) -> None:
    with pytest.raises(OverrideError) as caught:
        override_from_data(body)
    assert words in str(caught.value)
    assert "Value error" not in str(caught.value)


def test_held_to_the_plans_in_force() -> None:
    plan = plan_from_data(
        {
            "name": "nine",
            "effective_from": "2016-09-10",
            "minimum_rate": "9",
            "standard_rates": {"*": "9"},
            "incentive_tiers": [{"min_sales": "0", "bonus": "0"}],
        }
    )
    with pytest.raises(OverrideError, match="below the minimum rate 9 of the plan effective"):
        check_against_plan(override_from_data({"rates": {"toys": "8.5"}}), plan)
    with pytest.raises(OverrideError, match="more than 100 %"):
        check_against_plan(override_from_data({"rates": {"toys": "99"}}), DEFAULT)
    with pytest.raises(OverrideError, match="excludes from new buyers' rates"):
        excluded = {"new_buyer_rates": {"computer-office/tablets/small": "20"}}
        check_against_plan(override_from_data(excluded), DEFAULT)
    check_against_plan(override_from_data({"rates": {"toys": "9.5"}}), DEFAULT)
