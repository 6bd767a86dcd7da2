"""The commission plan: the program's four tables, as validated data.

Rates are percentages of the order amount (``8`` means 8 %), exact decimals with at most four
places. How the tables combine, for an order of category C, new buyer or not, placed in a
period whose previous period's completed sales were S (docs/commissions.md says it at length):

  base  = Table 3 rate of C  if the buyer is new and C is eligible for it,
          Table 1 rate of C  otherwise (excluded categories keep their standard rate);
  bonus = Table 2 bonus of the highest tier whose ``min_sales`` <= S;
  total = base + bonus;

and Table 4, the total ladder, is that total for each Table 2 tier and each category the
plan names. It is derived, not a fourth input: a plan may state it (as the program publishes
it) and is refused when the statement disagrees with Tables 1 to 3.

Categories are lowercase slugs with ``/`` between levels (``computer-office/tablets``). A
table entry applies to its category and every category below it; the most specific entry
wins; ``*`` matches every category.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.core.problems import in_words
from app.errors import InvalidInput
from app.money.periods import START_DAY

ANY_CATEGORY = "*"
CATEGORY_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:/[a-z0-9]+(?:-[a-z0-9]+)*)*$"
_CATEGORY = re.compile(CATEGORY_PATTERN)
MAX_CATEGORY_LENGTH = 200
PLAN_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters
DEFAULT_PLAN_FILE = Path(__file__).resolve().parent / "plans" / "default.toml"

DEFAULT_WITHDRAWAL_MINIMUM = Decimal(16)
DEFAULT_WITHDRAWAL_FEE = Decimal(15)


def _positional(value: Decimal) -> Decimal:
    """``value`` written without an exponent (``1e1`` -> ``10``): how it is echoed back."""
    return Decimal(format(value, "f"))


Percent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=4), AfterValidator(_positional)]
Usd = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]


class PlanError(InvalidInput, ValueError):
    """A plan that cannot be used (the message says why)."""


def is_category(text: str) -> bool:
    return len(text) <= MAX_CATEGORY_LENGTH and _CATEGORY.fullmatch(text) is not None


def _ancestry(category: str) -> list[str]:
    """``a/b/c`` → ``["a/b/c", "a/b", "a", "*"]``: most specific first."""
    parts = category.split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)] + [ANY_CATEGORY]


def entry_for(table: Mapping[str, Decimal], category: str) -> str | None:
    """The key of the most specific entry of ``table`` covering ``category``, or None."""
    for key in _ancestry(category):
        if key in table:
            return key
    return None


def lookup(table: Mapping[str, Decimal], category: str) -> Decimal | None:
    """The most specific entry of ``table`` covering ``category``, or None."""
    key = entry_for(table, category)
    return None if key is None else table[key]


def _covered_by(category: str, keys: Iterable[str]) -> bool:
    wanted = set(keys)
    return any(key in wanted for key in _ancestry(category))


class IncentiveTier(BaseModel):
    """A row of Table 2: completed sales of the previous period from which ``bonus`` applies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_sales: Usd
    bonus: Percent


class LadderRow(BaseModel):
    """A row of Table 4: the total rates of one category at one Table 2 tier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_sales: Usd
    category: str
    standard: Percent
    new_buyer: Percent


@dataclass(frozen=True)
class WithdrawalRules:
    minimum_balance: Decimal = DEFAULT_WITHDRAWAL_MINIMUM  # the balance must be above it
    fee: Decimal = DEFAULT_WITHDRAWAL_FEE


@dataclass(frozen=True)
class RateParts:
    """How an order's rate was made, kept with every credit so it can be explained."""

    base: Decimal
    new_buyer_rate: bool  # base came from Table 3 (else Table 1)
    bonus: Decimal
    previous_sales: Decimal

    @property
    def total(self) -> Decimal:
        return self.base + self.bonus


# Seed, FAQ 6 (line 83): the program "offers minimum 8% commission". No plan may
# set its own floor (and so any rate of Table 1 or 3) lower.
PROGRAM_MINIMUM_RATE = Decimal(8)


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=PLAN_NAME_PATTERN)
    effective_from: date = Field(description="The first day of a calculation period (the 10th).")
    minimum_rate: Percent = Field(description="No rate of Table 1 or 3 may be lower.")
    standard_rates: dict[str, Percent] = Field(description="Table 1; must contain '*'.")
    incentive_tiers: tuple[IncentiveTier, ...] = Field(
        min_length=1, description="Table 2, by ascending min_sales; the first at 0."
    )
    new_buyer_rates: dict[str, Percent] = Field(
        default_factory=dict, description="Table 3; never below Table 1 for a category."
    )
    new_buyer_excluded: tuple[str, ...] = Field(
        default=(), description="Categories (and those below) that never get a Table 3 rate."
    )
    ladder: tuple[LadderRow, ...] | None = Field(
        default=None, description="Table 4. Derived; when given, it must match Tables 1-3."
    )
    withdrawal_minimum: Usd = Field(
        default=DEFAULT_WITHDRAWAL_MINIMUM, description="A withdrawal needs a balance above this."
    )
    withdrawal_fee: Usd = Field(
        default=DEFAULT_WITHDRAWAL_FEE, description="Charged per withdrawal."
    )

    @field_validator("minimum_rate")
    @classmethod
    def _program_floor(cls, rate: Decimal) -> Decimal:
        if rate < PROGRAM_MINIMUM_RATE:
            raise ValueError(
                f"{rate} is below the program's minimum of {PROGRAM_MINIMUM_RATE} %"
                " (the program offers a minimum 8% commission)"
            )
        return rate

    @field_validator("effective_from")
    @classmethod
    def _period_start(cls, day: date) -> date:
        if day.day != START_DAY:
            raise ValueError(f"a plan takes effect at the start of a period: the {START_DAY}th")
        return day

    @field_validator("standard_rates", "new_buyer_rates")
    @classmethod
    def _table_keys(cls, table: dict[str, Decimal]) -> dict[str, Decimal]:
        for key in table:
            if key != ANY_CATEGORY and not is_category(key):
                raise ValueError(f"{key!r} is not a category (lowercase-slug/sub-slug) or '*'")
        return table

    @field_validator("new_buyer_excluded")
    @classmethod
    def _excluded_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not is_category(key):
                raise ValueError(f"{key!r} is not a category (lowercase-slug/sub-slug)")
        return keys

    @model_validator(mode="after")
    def _check_rates(self) -> Plan:
        if ANY_CATEGORY not in self.standard_rates:
            raise ValueError("standard_rates (Table 1) needs a '*' rate for other categories")
        for table_name, table in (
            ("standard_rates", self.standard_rates),
            ("new_buyer_rates", self.new_buyer_rates),
        ):
            for key, rate in table.items():
                if rate < self.minimum_rate:
                    raise ValueError(
                        f"{table_name}[{key!r}] = {rate} is below the minimum rate "
                        f"{self.minimum_rate}"
                    )
        for key in self.new_buyer_rates:
            if key != ANY_CATEGORY and _covered_by(key, self.new_buyer_excluded):
                raise ValueError(f"new_buyer_rates[{key!r}] is inside an excluded category")
        self._check_new_buyer_floor()
        if self.withdrawal_minimum < self.withdrawal_fee:
            raise ValueError(
                f"withdrawal_minimum ({self.withdrawal_minimum}) is below withdrawal_fee "
                f"({self.withdrawal_fee}): a balance just above the minimum could not pay the fee"
            )
        return self

    def _check_new_buyer_floor(self) -> None:
        """A new buyer's rate (Table 3) is never below the standard rate (Table 1) of the same
        category, the most specific entry of each table deciding. Checking the categories the
        plan names is enough: any other category has the rates of its closest named ancestor."""
        for category in sorted(self.named_categories()):
            special = self.new_buyer_rate(category)
            standard = self.standard_rate(category)
            if special is None or special >= standard:
                continue
            special_key = entry_for(self.new_buyer_rates, category)
            standard_key = entry_for(self.standard_rates, category)
            where = (
                "'*' (every category without an entry of its own)"
                if category == ANY_CATEGORY
                else repr(category)
            )
            raise ValueError(
                f"new_buyer_rates[{special_key!r}] = {special} is below the standard rate "
                f"{standard} (standard_rates[{standard_key!r}]) for {where}: a new buyer's "
                "rate (Table 3) may not be lower than the standard rate (Table 1)"
            )

    @model_validator(mode="after")
    def _check_tiers(self) -> Plan:
        tiers = self.incentive_tiers
        if tiers[0].min_sales != 0:
            raise ValueError("incentive_tiers (Table 2) must start at min_sales 0")
        for lower, higher in itertools.pairwise(tiers):
            if higher.min_sales <= lower.min_sales:
                raise ValueError("incentive_tiers must be in strictly ascending min_sales")
            if higher.bonus < lower.bonus:
                raise ValueError("a higher incentive tier cannot pay a smaller bonus")
        bases = [*self.standard_rates.values(), *self.new_buyer_rates.values()]
        highest = max(bases) + tiers[-1].bonus
        if highest > 100:
            raise ValueError(f"a total rate would reach {highest} %, more than 100 %")
        return self

    @model_validator(mode="after")
    def _check_ladder(self) -> Plan:
        derived = self.derived_ladder()
        if self.ladder is None:
            return self
        seen: set[tuple[Decimal, str]] = set()
        for row in self.ladder:
            if (row.min_sales, row.category) in seen:
                raise ValueError(
                    f"ladder (Table 4) states the row of {row.category!r} from "
                    f"{row.min_sales} more than once"
                )
            seen.add((row.min_sales, row.category))
        if _ladder_key(self.ladder) != _ladder_key(derived):
            raise ValueError(
                "ladder (Table 4) does not match Tables 1-3; expected: "
                + "; ".join(
                    f"{r.category} from {r.min_sales}: {r.standard} / {r.new_buyer}"
                    for r in derived
                )
            )
        return self

    # -- the rules ------------------------------------------------------------------------

    @property
    def withdrawal_rules(self) -> WithdrawalRules:
        return WithdrawalRules(self.withdrawal_minimum, self.withdrawal_fee)

    def standard_rate(self, category: str) -> Decimal:
        rate = lookup(self.standard_rates, category)
        assert rate is not None  # '*' is always there
        return rate

    def new_buyer_rate(self, category: str) -> Decimal | None:
        """The Table 3 rate of a category, or None when it has none or is excluded."""
        if _covered_by(category, self.new_buyer_excluded):
            return None
        return lookup(self.new_buyer_rates, category)

    def bonus(self, previous_sales: Decimal) -> Decimal:
        reached = [t.bonus for t in self.incentive_tiers if t.min_sales <= previous_sales]
        return reached[-1] if reached else Decimal(0)

    def rate(self, category: str, new_buyer: bool, previous_sales: Decimal) -> RateParts:
        special = self.new_buyer_rate(category) if new_buyer else None
        return RateParts(
            base=self.standard_rate(category) if special is None else special,
            new_buyer_rate=special is not None,
            bonus=self.bonus(previous_sales),
            previous_sales=previous_sales,
        )

    def named_categories(self) -> set[str]:
        """``*`` and every category a table of the plan names."""
        return {ANY_CATEGORY, *self.standard_rates, *self.new_buyer_rates, *self.new_buyer_excluded}

    def derived_ladder(self) -> tuple[LadderRow, ...]:
        """Table 4: per Table 2 tier, per category named by the plan, the two totals."""
        named = self.named_categories()
        rows = []
        for tier in self.incentive_tiers:
            for category in sorted(named, key=lambda c: (c != ANY_CATEGORY, c)):
                rows.append(
                    LadderRow(
                        min_sales=tier.min_sales,
                        category=category,
                        standard=self.rate(category, False, tier.min_sales).total,
                        new_buyer=self.rate(category, True, tier.min_sales).total,
                    )
                )
        return tuple(rows)


def _ladder_key(rows: Iterable[LadderRow]) -> set[tuple[Decimal, str, Decimal, Decimal]]:
    # Compared as sets of values: the statement's order and "8" versus "8.00" do not matter.
    return {(r.min_sales, r.category, r.standard, r.new_buyer) for r in rows}


# The plan's ``pattern=``s in words (the API's PATTERN_WORDS include these).
PATTERN_WORDS = {
    CATEGORY_PATTERN: "must be lowercase slugs (letters, digits, single hyphens) with '/' "
    "between levels, like computer-office/tablets",
    PLAN_NAME_PATTERN: "must not contain control characters",
}


def _problem(err: Mapping[str, Any]) -> str:
    """One validation error of a plan, in the API's words (``app.core.problems``)."""
    if err.get("type") == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern"))
        return PATTERN_WORDS.get(pattern, "has a character that is not allowed")
    return in_words(err)


def plan_from_data(data: Mapping[str, Any]) -> Plan:
    """Validate a plan; the ladder (Table 4) is always filled in, derived. A fault raises
    ``PlanError`` in the API's words, each as ``<field>: <problem>``."""
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {_problem(err)}"
            for err in exc.errors()
        )
        raise PlanError(problems) from None
    return plan.model_copy(update={"ladder": plan.derived_ladder()})


def read_plan_file(path: Path) -> Plan:
    """A plan from a TOML file (numbers read as exact decimals) or a JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            data = tomllib.loads(text, parse_float=Decimal)
    except ValueError as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise PlanError(f"{path.name} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path.name}: expected a table of plan fields")
    return plan_from_data(data)
