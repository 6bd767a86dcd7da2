"""Payout overrides: a publisher's (or a network's) own rates for some categories, pure.

An override is a set of entries, category -> rate (``rates``, Table 1 for this publisher)
and category -> new buyer's rate (``new_buyer_rates``, Table 3), percentages like the plan's
(``8.5`` = 8.5 %, at most four decimals). A version of it takes effect from a calculation
period, as plans do (``OverrideVersion``): the version in force in period P is the latest
one effective on or before P's start.

**Precedence** (``base_rate``), for an order of category C: each table keeps its own
``entry_for`` rule (an entry covers its category and every category below it), then

1. the most specific entry covering C wins, across the plan and the overrides in force
   (``toys/dolls`` beats ``toys``, which beats ``*``);
2. at equal specificity, the publisher's own override beats its network's, which beats the
   plan.

So with a plan ``toys = 9``, ``toys/dolls = 10`` and an override ``toys = 12``, a toy car
earns 12 and a doll 10 (the plan's entry is more specific); an override ``*`` changes only
the categories the plan has no entry for. A new buyer's order (category not excluded by
the plan's ``new_buyer_excluded``) takes the winning new buyer's entry the same way, unless
it is lower than the winning standard rate: a new buyer never earns less than a standard
buyer (the plan's own rule, kept across tables that did not know each other). The
incentive bonus (Table 2) stays the plan's; overrides change the base rate only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from app.core.problems import in_words
from app.errors import InvalidInput
from app.money.periods import Period
from app.money.plan import (
    ANY_CATEGORY,
    CATEGORY_PATTERN,
    PATTERN_WORDS,
    PROGRAM_MINIMUM_RATE,
    Percent,
    Plan,
    entry_for,
    is_category,
)


class OverrideError(InvalidInput, ValueError):
    """An override that cannot be used (the message says why)."""


class RateSource(StrEnum):
    """Where an order's base rate came from."""

    plan = "plan"
    override = "override"


class Override(BaseModel):
    """One version's entries: ``rates`` and ``new_buyer_rates``, category -> percent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rates: dict[str, Percent] = {}
    new_buyer_rates: dict[str, Percent] = {}

    @field_validator("rates", "new_buyer_rates")
    @classmethod
    def _entries(cls, table: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, rate in table.items():
            if key != ANY_CATEGORY and not is_category(key):
                raise ValueError(
                    f"{key!r} is not a category: it {PATTERN_WORDS[CATEGORY_PATTERN]}, or is '*'"
                )
            if rate < PROGRAM_MINIMUM_RATE:
                raise ValueError(
                    f"[{key!r}] = {rate} is below the program's minimum of "
                    f"{PROGRAM_MINIMUM_RATE} % (the program offers a minimum 8% commission)"
                )
        return table

    @model_validator(mode="after")
    def _check(self) -> Override:
        if not self.rates and not self.new_buyer_rates:
            raise ValueError("an override needs at least one entry in rates or new_buyer_rates")
        # As in a plan: a new buyer's rate is never below the standard rate of the same
        # category, each table's most specific entry deciding (where both tables cover it).
        for category in sorted({*self.rates, *self.new_buyer_rates}):
            special = _lookup(self.new_buyer_rates, category)
            standard = _lookup(self.rates, category)
            if special is not None and standard is not None and special < standard:
                raise ValueError(
                    f"new_buyer_rates[{entry_for(self.new_buyer_rates, category)!r}] = "
                    f"{special} is below rates[{entry_for(self.rates, category)!r}] = "
                    f"{standard} for {category!r}: a new buyer's rate may not be lower than "
                    "the standard rate"
                )
        return self

    def as_json(self) -> dict[str, dict[str, str]]:
        return {
            "rates": {k: str(v) for k, v in sorted(self.rates.items())},
            "new_buyer_rates": {k: str(v) for k, v in sorted(self.new_buyer_rates.items())},
        }


def _lookup(table: Mapping[str, Decimal], category: str) -> Decimal | None:
    key = entry_for(table, category)
    return None if key is None else table[key]


def override_from_data(data: Mapping[str, Any]) -> Override:
    """Validate an override's body; a fault raises ``OverrideError`` in the API's words,
    each as ``<field>: <problem>``."""
    try:
        return Override.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {_words(err)}"
            for err in exc.errors()
        )
        raise OverrideError(problems) from None


def _words(err: Mapping[str, Any]) -> str:
    if err.get("type") == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return in_words(err)


def check_against_plan(override: Override, plan: Plan) -> None:
    """Hold ``override`` to a plan that may be in force with it: no rate below the plan's
    ``minimum_rate``, no total (with the plan's highest bonus) above 100 %, no new buyer's
    entry inside a category the plan excludes from new buyers' rates. Raises
    ``OverrideError`` naming the entry and the plan."""
    which = f"the plan effective {plan.effective_from}"
    top_bonus = plan.incentive_tiers[-1].bonus
    for name, table in (("rates", override.rates), ("new_buyer_rates", override.new_buyer_rates)):
        for key, rate in sorted(table.items()):
            if rate < plan.minimum_rate:
                raise OverrideError(
                    f"{name}[{key!r}] = {rate} is below the minimum rate {plan.minimum_rate} "
                    f"of {which}"
                )
            if rate + top_bonus > 100:
                raise OverrideError(
                    f"{name}[{key!r}] = {rate} with {which}'s highest bonus {top_bonus} "
                    "would pay more than 100 %"
                )
    for key in sorted(override.new_buyer_rates):
        if key != ANY_CATEGORY and _excluded(plan, key):
            raise OverrideError(
                f"new_buyer_rates[{key!r}] is inside a category {which} excludes from new "
                "buyers' rates (they keep the standard rate)"
            )


def _excluded(plan: Plan, category: str) -> bool:
    return any(category == k or category.startswith(k + "/") for k in plan.new_buyer_excluded)


@dataclass(frozen=True)
class OverrideVersion:
    """A version of a publisher's override: in force from ``effective_from``."""

    publisher_id: int  # whose override: the publisher's own, or its network's
    effective_from: Period
    override: Override


@dataclass(frozen=True)
class BaseRate:
    """An order's base rate (before the incentive bonus) and where it came from."""

    rate: Decimal
    new_buyer_rate: bool  # from a new buyer's table (the plan's Table 3 or an override's)
    source: RateSource
    version: OverrideVersion | None  # the override it came from, when it did
    entry: str  # the category entry that decided it


def specificity(key: str) -> int:
    """``*`` 0, ``toys`` 1, ``toys/dolls`` 2: how many levels an entry names."""
    return 0 if key == ANY_CATEGORY else key.count("/") + 1


Layer = tuple[OverrideVersion | None, Mapping[str, Decimal]]  # None: the plan
Found = tuple[Decimal, OverrideVersion | None, str]  # rate, its version, its entry


def _winner(
    category: str, plan_table: Mapping[str, Decimal], layers: Sequence[Layer]
) -> Found | None:
    """The most specific entry covering ``category`` across ``layers`` (by priority, the
    highest first) and the plan's table, which comes last."""
    best: Found | None = None
    plan_layer: Layer = (None, plan_table)
    for version, table in [*layers, plan_layer]:
        key = entry_for(table, category)
        # Strictly more specific only: at equal specificity the earlier layer stays.
        if key is not None and (best is None or specificity(key) > specificity(best[2])):
            best = (table[key], version, key)
    return best


def base_rate(
    plan: Plan, versions: Sequence[OverrideVersion], category: str, new_buyer: bool
) -> BaseRate:
    """The base rate of an order of ``category`` under ``plan`` and the override versions
    in force (``versions``: the publisher's own first, then its network's), by the rule
    in this module's docstring. Without versions it is ``plan.rate(...).base``."""
    std: list[Layer] = [(v, v.override.rates) for v in versions]
    standard = _winner(category, plan.standard_rates, std)
    assert standard is not None  # the plan's '*' covers every category
    if new_buyer and not _excluded(plan, category):
        nb: list[Layer] = [(v, v.override.new_buyer_rates) for v in versions]
        special = _winner(category, plan.new_buyer_rates, nb)
        if special is not None and special[0] >= standard[0]:
            return _made(special, True)
    return _made(standard, False)


def _made(found: Found, new_buyer_rate: bool) -> BaseRate:
    rate, version, key = found
    source = RateSource.plan if version is None else RateSource.override
    return BaseRate(rate, new_buyer_rate, source, version, key)
