"""The one exception tree (app/errors.py): each domain error's branch, status and kind, and
the text a caller reads."""

from __future__ import annotations

import pytest

from app.accounts.merchants import MerchantError, SignatureError
from app.accounts.publishers import PublisherError
from app.cli import CliError
from app.clicks.record import EventError
from app.core.migrate import MigrationError
from app.edge.commit import NotRecorded
from app.edge.linkcache import LinkUnavailable
from app.errors import (
    ClickTrackError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from app.flusher.sink import PartitionError
from app.links.model import CodeTaken, LinkError, validate_destination
from app.money.closing import BeforeHistory, PeriodNotEnded
from app.money.periods import Month, Period, PeriodError
from app.money.plan import PlanError
from app.money.plans_store import PlanInUse
from app.money.withdrawal_rules import WithdrawalRefused, WithdrawalStateConflict
from app.orders.changes import OrderConflict
from app.settings import ConfigError
from app.traffic.counts import RangeError

BRANCHES: list[tuple[type[ClickTrackError], int, str]] = [
    (ClickTrackError, 500, "internal"),
    (InvalidInput, 422, "invalid"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (TooLarge, 413, "too_large"),
    (Unavailable, 503, "unavailable"),
]

DOMAIN: list[tuple[type[ClickTrackError], type[ClickTrackError]]] = [
    (LinkError, InvalidInput),
    (CodeTaken, Conflict),
    (PlanError, InvalidInput),
    (PeriodError, InvalidInput),
    (PublisherError, InvalidInput),
    (MerchantError, InvalidInput),
    (RangeError, InvalidInput),
    (SignatureError, Unauthorized),
    (PlanInUse, Conflict),
    (OrderConflict, Conflict),
    (WithdrawalRefused, Conflict),
    (WithdrawalStateConflict, Conflict),
    (PeriodNotEnded, Conflict),
    (BeforeHistory, Conflict),
    (LinkUnavailable, Unavailable),
    (NotRecorded, Unavailable),
    (ConfigError, ClickTrackError),
    (MigrationError, ClickTrackError),
    (EventError, ClickTrackError),
    (PartitionError, ClickTrackError),
    (CliError, ClickTrackError),
]


@pytest.mark.parametrize(("cls", "status", "kind"), BRANCHES)
def test_branches(cls: type[ClickTrackError], status: int, kind: str) -> None:
    error = cls("went wrong")
    assert (error.status, error.kind) == (status, kind)
    assert (error.message, error.field, str(error)) == ("went wrong", None, "went wrong")


@pytest.mark.parametrize(("cls", "branch"), DOMAIN)
def test_domain_errors_answer_as_their_branch(
    cls: type[ClickTrackError], branch: type[ClickTrackError]
) -> None:
    error = cls("went wrong")
    assert isinstance(error, branch)
    assert (error.status, error.kind) == (branch.status, branch.kind)
    assert error.describe() == str(error) == "went wrong"
    assert error.args == ("went wrong",)


def test_code_taken_is_a_conflict_and_a_link_error() -> None:
    assert issubclass(CodeTaken, LinkError)
    assert CodeTaken("taken").status == 409


@pytest.mark.parametrize("cls", [PlanError, PeriodError, RangeError, EventError])
def test_value_errors_stay_value_errors(cls: type[ClickTrackError]) -> None:
    assert issubclass(cls, ValueError)


def test_describe_names_the_field() -> None:
    error = InvalidInput("required with an admin key", field="publisher_id")
    assert error.describe() == "publisher_id: required with an admin key"
    assert str(error) == "required with an admin key"


def test_destination_errors_name_the_field() -> None:
    with pytest.raises(LinkError) as caught:
        validate_destination("https://evil.test/", ("example.com",))
    assert caught.value.field == "destination"
    assert caught.value.describe() == "destination: host 'evil.test' is not allowed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2016-13", "no such month: 2016-13"),
        ("2016-00", "no such month: 2016-00"),
        ("1969-01", "expected a year from 1970 to 2999, got 1969"),
        ("x", "expected YYYY-MM, got 'x'"),
    ],
)
def test_period_names_raise_period_error(text: str, message: str) -> None:
    with pytest.raises(PeriodError) as caught:
        Period.parse(text)
    assert (str(caught.value), caught.value.describe()) == (message, message)
    with pytest.raises(PeriodError) as caught:
        Month.parse(text, field="month")
    assert caught.value.describe() == f"month: {message}"
    with pytest.raises(ValueError, match=r"^(expected|no such)"):
        Period.parse(text, field="period")
