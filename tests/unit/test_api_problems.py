"""Validation problems in words: every ``pattern=`` the API checks has its description, and
pydantic's errors read as a person would say them."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.errors import PATTERN_WORDS, SEND_AN_OBJECT, problem
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
