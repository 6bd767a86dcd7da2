"""Names people read in reports and on the dashboard (publishers, merchants) are held to the
tracking strings' rule: no control or invisible character can make two look alike."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_api import assert_error, bearer
from tests.integration.test_cli import run_cli

SPOOFS = ["\u202eKrow", "Blog\x01", "Sh\u200bop", "\ufeffShop", "Sho\u00adp", "A\u2028B"]


@pytest.mark.parametrize("name", SPOOFS)
async def test_a_publisher_name_with_an_invisible_character_is_refused(
    app_client: httpx.AsyncClient, admin_key: str, name: str
) -> None:
    answer = await app_client.post(
        "/api/v1/publishers", json={"name": name}, headers=bearer(admin_key)
    )
    body = assert_error(answer, 422, "invalid")
    assert "control or invisible characters (U+" in body["message"]


def test_a_merchant_name_with_an_invisible_character_is_refused(database_url: str) -> None:
    result = run_cli(database_url, "create-merchant", "Sh\u200bop")
    assert result.returncode == 1
    assert "control or invisible characters (U+200B)" in result.stderr
    assert "Traceback" not in result.stderr


async def test_names_in_other_scripts_are_kept(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    for name in ["Café Blog", "新闻 站", "Блог"]:
        answer = await app_client.post(
            "/api/v1/publishers", json={"name": name}, headers=bearer(admin_key)
        )
        assert answer.status_code == 201 and answer.json()["name"] == name
