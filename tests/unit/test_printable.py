"""The API's PRINTABLE pattern refuses what the redirect's parser refuses: one definition
(app/core/chars.py), so an invisible character is a 422 at the API and a dropped value at the
redirect, never stored on one side and unmatchable on the other."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api.params import PRINTABLE, TrackingText
from app.api.postback import PostbackIn
from app.core.chars import is_refused
from tests.unit.test_params import SPOOFERS

_app = FastAPI()


@_app.get("/f")
def _filter(af: TrackingText = None) -> dict[str, str | None]:
    return {"af": af}


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_app), base_url="http://t")


@pytest.mark.parametrize("junk", [*SPOOFERS, "\x00", "\n", "\x7f", "\x85"])
async def test_a_filter_with_an_invisible_or_control_character_is_422(junk: str) -> None:
    async with _client() as client:
        assert (await client.get("/f", params={"af": f"12{junk}3"})).status_code == 422


async def test_visible_filters_pass() -> None:
    async with _client() as client:
        for value in ["123", "caf\u00e9", "a b", "\u65e5\u672c", "\U0001f600"]:
            assert (await client.get("/f", params={"af": value})).json() == {"af": value}


@pytest.mark.parametrize("junk", SPOOFERS)
def test_a_postback_id_with_an_invisible_character_is_refused(junk: str) -> None:
    with pytest.raises(ValidationError, match="order_id"):
        PostbackIn.model_validate(
            {
                "order_id": f"A{junk}B",
                "click_id": "x",
                "order_time": "2026-01-01T00:00:00Z",
                "amount": "1.00",
            },
            context=None,
        )


@given(text=st.text(max_size=20))
def test_the_pattern_is_the_parser_rule(text: str) -> None:
    assert (re.fullmatch(PRINTABLE, text) is not None) == (not any(map(is_refused, text)))
