"""Validation problems in words: every ``pattern=`` the API checks has its description, and
pydantic's errors read as a person would say them."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic_core import core_schema

from app.api.errors import PATTERN_WORDS, SEND_AN_OBJECT, problem, unparsed_body
from app.api.params import MAX_ID
from app.core.problems import FALLBACK
from app.links.model import echoed
from app.main import create_app
from app.settings import Settings


def patterns(node: Any) -> set[str]:
    """Every ``pattern`` of an OpenAPI document (parameters and body schemas)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            found.add(node["pattern"])
        for value in node.values():
            found |= patterns(value)
    elif isinstance(node, list):
        for value in node:
            found |= patterns(value)
    return found


def test_every_pattern_of_the_api_is_described() -> None:
    document = create_app(Settings()).api.openapi()
    used = patterns(document)
    assert len(used) >= 4
    assert used <= set(PATTERN_WORDS), used - set(PATTERN_WORDS)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            {"type": "json_invalid", "loc": ("body", 7), "ctx": {"error": "Expecting value"}},
            "the body is not valid JSON (at character 7: Expecting value)",
        ),
        ({"type": "missing", "loc": ("body",)}, SEND_AN_OBJECT),
        ({"type": "model_attributes_type", "loc": ("body",)}, SEND_AN_OBJECT),
        ({"type": "model_type", "loc": ("body",)}, SEND_AN_OBJECT),
        ({"type": "missing", "loc": ("body", "reason")}, "required"),
        ({"type": "extra_forbidden", "loc": ("body", "x")}, "unknown field"),
        (
            {"type": "string_pattern_mismatch", "ctx": {"pattern": "^x$"}},
            "has a character that is not allowed",
        ),
    ],
)
def test_problems_in_words(error: dict[str, Any], words: str) -> None:
    assert problem(error) == words
    assert "pattern" not in words and "^" not in words


def integers_without_maximum(node: Any, schemas: dict[str, Any], seen: set[str]) -> list[Any]:
    """Every integer of a parameter or request body schema (refs followed) with no
    ``maximum``."""
    found: list[Any] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                found += integers_without_maximum(schemas[name], schemas, seen)
            return found
        if node.get("type") == "integer" and "maximum" not in node:
            found.append(node)
        for value in node.values():
            found += integers_without_maximum(value, schemas, seen)
    elif isinstance(node, list):
        for value in node:
            found += integers_without_maximum(value, schemas, seen)
    return found


def test_every_integer_the_api_takes_is_bounded() -> None:
    """An integer past a bigint is refused at validation (naming the field), never by
    asyncpg (a message that names nothing): every integer parameter and request body field
    has a maximum, at most 2**63 - 1."""
    document = create_app(Settings()).api.openapi()
    schemas = document["components"]["schemas"]
    unbounded = []
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            inputs = [p["schema"] for p in operation.get("parameters", [])]
            inputs.append(operation.get("requestBody", {}))
            for schema in inputs:
                missing = integers_without_maximum(schema, schemas, set())
                unbounded += [(method, path, node) for node in missing]
            checked += 1
    assert checked > 40
    assert unbounded == []


def test_a_bigint_bound_is_said_as_an_id_range() -> None:
    err = {"type": "less_than_equal", "loc": ("query", "after"), "ctx": {"le": MAX_ID}}
    assert problem(err) == (
        "must be at most 9223372036854775807 (ids and cursors are whole numbers up to that)"
    )


# Every common pydantic error type, as pydantic raises it, in words (never its English).
@pytest.mark.parametrize(
    ("error", "words"),
    [
        ({"type": "less_than_equal", "ctx": {"le": 3600}}, "must be at most 3600"),
        ({"type": "greater_than_equal", "ctx": {"ge": 1}}, "must be at least 1"),
        ({"type": "less_than", "ctx": {"lt": 0.5}}, "must be less than 0.5"),
        ({"type": "greater_than", "ctx": {"gt": 0.0}}, "must be more than 0"),
        ({"type": "string_too_short", "ctx": {"min_length": 1}}, "must not be empty"),
        ({"type": "string_too_short", "ctx": {"min_length": 3}}, "must be at least 3 characters"),
        ({"type": "string_too_long", "ctx": {"max_length": 200}}, "must be at most 200 characters"),
        ({"type": "too_short", "ctx": {"min_length": 1}}, "must have at least 1 item"),
        ({"type": "too_long", "ctx": {"max_length": 50}}, "must have at most 50 items"),
        ({"type": "int_parsing"}, "must be a whole number"),
        ({"type": "int_from_float"}, "must be a whole number, without a fraction"),
        ({"type": "bool_parsing"}, "must be true or false"),
        ({"type": "datetime_parsing"}, "must be a date and time like 2026-06-01T12:00:00Z"),
        (
            {"type": "datetime_from_date_parsing"},
            "must be a date and time like 2026-06-01T12:00:00Z",
        ),
        ({"type": "date_parsing"}, "must be a day as YYYY-MM-DD"),
        ({"type": "enum", "ctx": {"expected": "'a' or 'b'"}}, "must be one of 'a' or 'b'"),
        ({"type": "literal_error", "ctx": {"expected": "'x' or 'y'"}}, "must be one of 'x' or 'y'"),
        ({"type": "missing", "loc": ("query", "x")}, "required"),
        ({"type": "decimal_parsing"}, "must be a decimal number like 12.50"),
        ({"type": "decimal_type"}, "must be a decimal number like 12.50"),
        ({"type": "decimal_max_digits", "ctx": {"max_digits": 12}}, "must have at most 12 digits"),
        (
            {"type": "decimal_max_places", "ctx": {"decimal_places": 2}},
            "must have at most 2 digits after the decimal point",
        ),
        (
            {"type": "decimal_whole_digits", "ctx": {"whole_digits": 10}},
            "must have at most 10 digits before the decimal point",
        ),
        ({"type": "decimal_not_finite"}, "must be a decimal number like 12.50"),
        (
            {"type": "uuid_parsing"},
            "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
        ),
        ({"type": "json_invalid", "ctx": {"error": "EOF"}}, "the body is not valid JSON (EOF)"),
        ({"type": "dict_type", "loc": ("body", "x")}, "must be a JSON object"),
        ({"type": "model_type", "loc": ("body", "x")}, "must be a JSON object"),
        ({"type": "list_type"}, "must be a list"),
        (
            {"type": "timezone_aware"},
            "needs a time zone, like 2026-06-01T12:00:00Z or +02:00",
        ),
        (
            {"type": "value_error", "ctx": {"error": ValueError("must be in the future")}},
            "must be in the future",
        ),
    ],
)
def test_pydantic_errors_in_words(error: dict[str, Any], words: str) -> None:
    said = problem(error)
    assert said == words
    assert "Input should" not in said and "String should" not in said


def test_pydantic_raises_the_types_translated() -> None:
    """The errors pydantic actually raises for the constraints the API uses read as words:
    the message never falls back to pydantic's own English."""
    from datetime import datetime
    from decimal import Decimal

    from pydantic import AwareDatetime, BaseModel, Field, ValidationError

    class Sample(BaseModel):
        n: int = Field(le=3600)
        hosts: list[str] = Field(min_length=1)
        host: str = Field(min_length=1)
        at: AwareDatetime
        amount: Decimal = Field(max_digits=4, decimal_places=2)
        flag: bool

    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(
            {
                "n": 3601,
                "hosts": [],
                "host": "",
                "at": datetime(2027, 6, 1),
                "amount": "123.456",
                "flag": "maybe",
            }
        )
    for err in caught.value.errors():
        assert "should" not in problem(err), err


def test_unparsed_bodies_in_words() -> None:
    try:
        b"\xff".decode()
    except UnicodeDecodeError as exc:
        assert (
            unparsed_body(exc) == "the body is not valid JSON (not UTF-8 text: byte 0xff at byte 0)"
        )
    assert unparsed_body(RecursionError()) == "the body is not valid JSON (nested too deep)"
    assert unparsed_body(None) == "the body is not valid JSON"


def test_echoed_text_is_bounded() -> None:
    assert echoed("abc") == "abc"
    assert echoed("x" * 64) == "x" * 64
    assert echoed("x" * 65) == "x" * 64 + "…"


# The error types of pydantic_core none of our input models can raise: no model of ours is
# frozen, takes bytes, callables, fractions, complex numbers, function arguments, dataclasses,
# deques or counters, nor reads attributes of Python objects.
CANNOT_RAISE = {
    "no_such_attribute",
    "needs_python_object",
    "recursion_depth_exceeded",
    "frozen_field",
    "frozen_instance",
    "get_attribute_error",
    "dataclass_exact_type",
    "named_tuple_type",
    "default_factory_not_called",
    "frozen_dict_type",
    "ordered_dict_type",
    "counter_type",
    "deque_type",
    "iteration_error",
    "bytes_type",
    "bytes_too_short",
    "bytes_too_long",
    "bytes_invalid_encoding",
    "missing_sentinel_error",
    "ellipsis_error",
    "is_instance_of",
    "is_subclass_of",
    "callable_type",
    "arguments_type",
    "missing_argument",
    "unexpected_keyword_argument",
    "missing_keyword_only_argument",
    "unexpected_positional_argument",
    "missing_positional_only_argument",
    "multiple_argument_values",
    "fraction_type",
    "fraction_parsing",
    "complex_type",
    "complex_str_parsing",
}
_SAMPLE_CTX = {
    "le": 5,
    "ge": 1,
    "lt": 5,
    "gt": 1,
    "min_length": 2,
    "max_length": 3,
    "expected": "'a' or 'b'",
    "max_digits": 16,
    "decimal_places": 2,
    "whole_digits": 14,
    "pattern": "^x$",
    "error": "a validator's own words",
}


def error_types() -> list[str]:
    return list(typing.get_args(core_schema.ErrorType))


def test_the_allow_list_names_real_error_types() -> None:
    assert set(error_types()) >= CANNOT_RAISE


@pytest.mark.parametrize("kind", sorted(set(error_types()) - CANNOT_RAISE))
def test_every_error_type_our_models_can_raise_has_our_words(kind: str) -> None:
    err = {"type": kind, "loc": ("body", "x"), "ctx": _SAMPLE_CTX, "msg": "Input should be X"}
    words = problem(err)
    assert words != FALLBACK and words.strip(), kind
    for english in ("Input should", "Field required", "Value error", "Tuple should"):
        assert english not in words
