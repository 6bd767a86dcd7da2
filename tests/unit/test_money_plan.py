"""The commission plan: the default plan's known points, validation, and how tables combine."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.money.plan import DEFAULT_PLAN_FILE, Plan, PlanError, plan_from_data, read_plan_file

D = Decimal


@pytest.fixture(scope="module")
def plan() -> Plan:
    return read_plan_file(DEFAULT_PLAN_FILE)


def base_data() -> dict[str, Any]:
    return {
        "name": "Test",
        "effective_from": "2030-01-10",
        "minimum_rate": "8",
        "standard_rates": {"*": "8", "toys": "9", "toys/dolls": "10"},
        "incentive_tiers": [
            {"min_sales": "0", "bonus": "0"},
            {"min_sales": "50000", "bonus": "1"},
            {"min_sales": "400000", "bonus": "2"},
        ],
        "new_buyer_rates": {"*": "14", "toys": "15"},
        "new_buyer_excluded": ["computer-office/tablets"],
    }


def test_default_plan_has_the_known_points(plan: Plan) -> None:
    assert plan.minimum_rate == 8
    assert plan.rate("home-garden", False, D(0)).total == 8
    assert plan.rate("home-garden", False, D("399999.99")).total == 8
    assert plan.rate("home-garden", False, D(400000)).total == 10
    assert plan.rate("home-garden", True, D(400000)).total == 16  # the worked example
    for excluded in ("computer-office/tablets", "phones-telecommunications/mobile-phones"):
        assert plan.rate(excluded, True, D(0)).total == 8
        assert plan.rate(excluded, True, D(400000)).total == 10
        assert not plan.rate(excluded, True, D(0)).new_buyer_rate
    # Another product of the same top-level category is not excluded.
    assert plan.rate("computer-office/laptops", True, D(0)).total == 14
    assert plan.withdrawal_rules.minimum_balance == 16
    assert plan.withdrawal_rules.fee == 15


def test_the_ladder_is_derived_and_checked(plan: Plan) -> None:
    assert plan.ladder is not None
    rows = {(r.min_sales, r.category): (r.standard, r.new_buyer) for r in plan.ladder}
    assert rows[(D(400000), "*")] == (D(10), D(16))
    assert rows[(D(0), "computer-office/tablets")] == (D(8), D(8))
    data = base_data()
    data["ladder"] = [{"min_sales": "0", "category": "*", "standard": "8", "new_buyer": "15"}]
    with pytest.raises(PlanError, match="does not match"):
        plan_from_data(data)


def test_most_specific_category_wins() -> None:
    plan = plan_from_data(base_data())
    assert plan.standard_rate("toys/dolls/porcelain") == 10
    assert plan.standard_rate("toys/cars") == 9
    assert plan.standard_rate("books") == 8
    assert plan.rate("toys/dolls", True, D(60000)).total == 16  # 15 (toys, Table 3) + 1
    assert plan.rate("computer-office/tablets/kids", True, D(0)).total == 8


TOP_ROW = {"min_sales": "0", "category": "*", "standard": "8", "new_buyer": "14"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(effective_from="2030-01-01"), "start of a period"),
        (lambda d: d["standard_rates"].pop("*"), "'\\*' rate"),
        (lambda d: d["standard_rates"].update(toys="7.5"), "below the minimum"),
        (lambda d: d["new_buyer_rates"].update({"computer-office/tablets": "12"}), "excluded"),
        (lambda d: d["incentive_tiers"].pop(0), "start at min_sales 0"),
        (lambda d: d["incentive_tiers"].reverse(), "start at min_sales 0"),
        (lambda d: d["incentive_tiers"][2].update(bonus="0.5"), "smaller bonus"),
        (lambda d: d["incentive_tiers"][2].update(min_sales="50000"), "ascending"),
        (lambda d: d["standard_rates"].update(Toys="9"), "not a category"),
        (lambda d: d["standard_rates"].update(toys="9.12345"), "digits after the decimal point"),
        (lambda d: d["new_buyer_rates"].update(toys="99"), "more than 100"),
        (lambda d: d.update(surprise=1), "surprise: unknown field"),
        # A new buyer's rate (Table 3) below the standard rate (Table 1) that applies.
        (lambda d: d["new_buyer_rates"].update({"*": "7.99"}), "below the minimum rate 8"),
        (
            lambda d: d["new_buyer_rates"].update(toys="8.5"),
            r"new_buyer_rates\['toys'\] = 8.5 is below the standard rate 9 "
            r"\(standard_rates\['toys'\]\) for 'toys'",
        ),
        (
            lambda d: d["standard_rates"].update({"*": "14.5"}),
            r"new_buyer_rates\['\*'\] = 14 is below the standard rate 14.5",
        ),
        # toys/dolls: standard 10 (its own entry) but a new buyer gets toys' Table 3 rate.
        (
            lambda d: d["standard_rates"].update({"toys/dolls": "15.5"}),
            r"new_buyer_rates\['toys'\] = 15 is below the standard rate 15.5 "
            r"\(standard_rates\['toys/dolls'\]\) for 'toys/dolls'",
        ),
        # books: only the '*' entries apply, 14 versus a standard 20.
        (
            lambda d: d["standard_rates"].update(books="20"),
            r"new_buyer_rates\['\*'\] = 14 is below the standard rate 20 "
            r"\(standard_rates\['books'\]\) for 'books'",
        ),
        (lambda d: d.update(ladder=[TOP_ROW, TOP_ROW]), "more than once"),
        (lambda d: d.update(withdrawal_fee="16.01"), "below withdrawal_fee"),
        (lambda d: d.update(incentive_tiers=[]), "at least 1"),
    ],
)
def test_bad_plans_are_refused_with_a_reason(change: Any, message: str) -> None:
    data = copy.deepcopy(base_data())
    change(data)
    with pytest.raises(PlanError, match=message):
        plan_from_data(data)


def test_rates_that_respect_every_floor_are_accepted() -> None:
    data = base_data()
    # A new buyer's rate equal to the standard rate is allowed; so is a Table 1 rate above
    # Table 3 in an excluded category, where Table 3 never applies.
    data["standard_rates"].update({"computer-office/tablets": "20", "books": "14"})
    data["withdrawal_fee"] = data["withdrawal_minimum"] = "16"
    plan = plan_from_data(data)
    assert plan.rate("computer-office/tablets", True, D(0)).total == 20
    assert plan.rate("books", True, D(0)).total == 14


def test_plan_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(PlanError, match="not valid TOML"):
        read_plan_file(broken)
    with pytest.raises(PlanError, match="cannot read"):
        read_plan_file(tmp_path / "missing.toml")
    as_json = tmp_path / "plan.json"
    as_json.write_text(
        '{"name": "J", "effective_from": "2030-02-10", "minimum_rate": 8.1,'
        ' "standard_rates": {"*": 8.1}, "incentive_tiers": '
        '[{"min_sales": 0, "bonus": 0}]}'
    )
    plan = read_plan_file(as_json)
    assert plan.standard_rate("x") == D("8.1")  # read exactly, never through a float


@pytest.mark.parametrize(("floor", "standard"), [("5", "7"), ("0", "0"), ("7.9999", "8")])
def test_no_plan_goes_below_the_programs_8_percent(floor: str, standard: str) -> None:
    """Seed FAQ 6: the program offers a minimum 8 % commission, whatever a plan's own floor."""
    with pytest.raises(ValidationError, match="below the program's minimum of 8 %"):
        Plan.model_validate(
            {
                "name": "Low",
                "effective_from": "2030-02-10",
                "minimum_rate": floor,
                "standard_rates": {"*": standard},
                "incentive_tiers": [{"min_sales": 0, "bonus": 0}],
            }
        )
