"""Bad input answers 4xx in words naming the field, never a 500 or a vague message: ids and
cursors past a bigint, instants past what Postgres stores or without a zone, a link that
would expire before it is made, bodies JSON cannot read, unknown query parameters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_api import bearer, new_publisher, new_publisher_key

LINKS = "/api/v1/links"
PAST_A_BIGINT = "9223372036854775808"
HUGE = "99999999999999999999"
ID_RANGE = "must be at most 9223372036854775807 (ids and cursors are whole numbers up to that)"
YEAR_10000 = "9999-12-31T23:59:59-12:00"  # the year 10000 in UTC
STORABLE = "must be in the years 1970 to 2999 (UTC)"
NEEDS_A_ZONE = "needs a time zone, like 2026-06-01T12:00:00Z or +02:00"


@pytest.fixture
async def publisher_id(app_client: httpx.AsyncClient, admin_key: str) -> int:
    return await new_publisher(app_client, admin_key)


@pytest.fixture
async def publisher_key(app_client: httpx.AsyncClient, admin_key: str, publisher_id: int) -> str:
    return await new_publisher_key(app_client, admin_key, publisher_id)


def refused(response: httpx.Response, message: str) -> None:
    """A 422 ``invalid`` answer with exactly ``message``."""
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "invalid"
    assert body["message"] == message


# A. Ids and cursors past a bigint: refused at validation, the field named.
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", f"/api/v1/publishers/{PAST_A_BIGINT}", None, "path.publisher_id"),
        ("POST", f"/api/v1/publishers/{PAST_A_BIGINT}/api-keys", {}, "path.publisher_id"),
        ("POST", "/api/v1/publishers", {"name": "x", "network_id": int(HUGE)}, "body.network_id"),
        ("GET", f"/api/v1/reports/traffic?publisher_id={HUGE}", None, "query.publisher_id"),
        ("GET", f"/api/v1/money/ledger?after={HUGE}", None, "query.after"),
        ("GET", f"/api/v1/publishers?after={HUGE}", None, "query.after"),
        ("GET", f"/api/v1/links?after={HUGE}", None, "query.after"),
        ("GET", f"/api/v1/audit?before_id={HUGE}", None, "query.before_id"),
        ("POST", f"/api/v1/orders/{PAST_A_BIGINT}/disqualify", {"reason": "x"}, "path.order_id"),
    ],
)
async def test_ids_past_a_bigint_name_their_field(
    app_client: httpx.AsyncClient,
    admin_key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    response = await app_client.request(method, path, json=body, headers=bearer(admin_key))
    refused(response, f"{field}: {ID_RANGE}")


# B. Instants: storable, with a zone, answered in the form GET answers with.
async def test_instants_past_the_year_9999_in_utc_name_their_field(
    app_client: httpx.AsyncClient, admin_key: str, publisher_id: int, publisher_key: str
) -> None:
    link = {"destination": "https://shop.example.com/x", "expires_at": YEAR_10000}
    refused(
        await app_client.post(LINKS, json=link, headers=bearer(publisher_key)),
        f"body.expires_at: {STORABLE}",
    )
    refused(
        await app_client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys",
            json={"expires_at": YEAR_10000},
            headers=bearer(admin_key),
        ),
        f"body.expires_at: {STORABLE}",
    )
    keys = (await app_client.get("/api/v1/api-keys", headers=bearer(publisher_key))).json()
    key_id = keys["items"][0]["id"]
    refused(
        await app_client.post(
            f"/api/v1/api-keys/{key_id}/rotate",
            json={"expires_at": YEAR_10000},
            headers=bearer(publisher_key),
        ),
        f"body.expires_at: {STORABLE}",
    )
    refused(
        await app_client.get(
            "/api/v1/audit", params={"since": YEAR_10000}, headers=bearer(admin_key)
        ),
        f"query.since: {STORABLE}",
    )


async def test_a_key_expiry_without_a_zone_is_refused(
    app_client: httpx.AsyncClient, admin_key: str, publisher_id: int, publisher_key: str
) -> None:
    refused(
        await app_client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys",
            json={"expires_at": "2027-06-01T00:00:00"},
            headers=bearer(admin_key),
        ),
        f"body.expires_at: {NEEDS_A_ZONE}",
    )
    keys = (await app_client.get("/api/v1/api-keys", headers=bearer(publisher_key))).json()
    refused(
        await app_client.post(
            f"/api/v1/api-keys/{keys['items'][0]['id']}/rotate",
            json={"expires_at": "2099-06-01T00:00:00"},
            headers=bearer(publisher_key),
        ),
        f"body.expires_at: {NEEDS_A_ZONE}",
    )


async def test_a_new_key_answers_its_expiry_as_get_does(
    app_client: httpx.AsyncClient, admin_key: str, publisher_id: int
) -> None:
    created = await app_client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys",
        json={"expires_at": "2099-06-01T02:00:00+02:00"},
        headers=bearer(admin_key),
    )
    assert created.status_code == 201, created.text
    shown = await app_client.get(
        f"/api/v1/api-keys/{created.json()['id']}", headers=bearer(admin_key)
    )
    assert created.json()["expires_at"] == shown.json()["expires_at"]
    assert shown.json()["expires_at"] in ("2099-06-01T00:00:00Z", "2099-06-01T00:00:00+00:00")
    rotated = await app_client.post(
        f"/api/v1/api-keys/{created.json()['id']}/rotate",
        json={"expires_at": "2099-06-01T02:00:00+02:00"},
        headers=bearer(admin_key),
    )
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["expires_at"] == shown.json()["expires_at"]


# C. A link that would expire before it exists.
async def test_a_link_expiry_in_the_past_is_refused(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    message = (
        "expires_at: must be in the future: to stop a link now, set its status to disabled "
        "(or archived)"
    )
    past = "2000-01-01T00:00:00Z"
    refused(
        await app_client.post(
            LINKS,
            json={"destination": "https://shop.example.com/x", "expires_at": past},
            headers=bearer(publisher_key),
        ),
        message,
    )
    made = await app_client.post(
        LINKS, json={"destination": "https://shop.example.com/x"}, headers=bearer(publisher_key)
    )
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    refused(
        await app_client.patch(
            f"{LINKS}/{code}", json={"expires_at": past}, headers=bearer(publisher_key)
        ),
        message,
    )
    future = await app_client.patch(
        f"{LINKS}/{code}",
        json={"expires_at": "2099-01-01T00:00:00Z"},
        headers=bearer(publisher_key),
    )
    assert future.status_code == 200, future.text
    cleared = await app_client.patch(
        f"{LINKS}/{code}", json={"expires_at": None}, headers=bearer(publisher_key)
    )
    assert cleared.status_code == 200, cleared.text


# D. Bodies JSON cannot read: 422 saying why, as for any malformed JSON.
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"destination":"https://shop.example.com/\xff"}',
            "the body is not valid JSON (not UTF-8 text: byte 0xff at byte 41)",
        ),
        (b"[" * 5000 + b"]" * 5000, "the body is not valid JSON (nested too deep)"),
        (
            b'{"destination": ' + b"9" * 5000 + b"}",
            "the body is not valid JSON (a number is too long: at most 4300 digits)",
        ),
    ],
)
async def test_unreadable_bodies_say_why(
    app_client: httpx.AsyncClient, publisher_key: str, content: bytes, message: str
) -> None:
    response = await app_client.post(
        LINKS,
        content=content,
        headers={**bearer(publisher_key), "content-type": "application/json"},
    )
    refused(response, message)


# E. Unknown query parameters: refused on every API route, the redirect left alone.
async def test_unknown_query_parameters_are_refused(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    made = await app_client.post(
        LINKS, json={"destination": "https://shop.example.com/q"}, headers=bearer(publisher_key)
    )
    code = made.json()["code"]
    key = bearer(publisher_key)
    refused(
        await app_client.post("/api/v1/money/withdrawals?publisher_id=3", json={}, headers=key),
        "unknown query parameter 'publisher_id'",
    )
    refused(
        await app_client.get(f"{LINKS}/{code}/tracking-url?foo=bar", headers=key),
        "unknown query parameter 'foo'",
    )
    # declared ones, an alias and a dependency's included, still pass
    ok = await app_client.get(f"{LINKS}/{code}/tracking-url?af=1&cn=2", headers=key)
    assert ok.status_code == 200, ok.text
    report = await app_client.get(
        "/api/v1/reports/traffic?from=2026-01-01&to=2026-01-02&group_by=day", headers=key
    )
    assert report.status_code == 200, report.text
    refused(
        await app_client.get("/api/v1/reports/traffic?form=2026-01-01", headers=key),
        "unknown query parameter 'form'",
    )
    # H. a long name is echoed bounded
    refused(
        await app_client.get(f"{LINKS}?{'x' * 500}=1", headers=key),
        f"unknown query parameter '{'x' * 64}…'",
    )
    # the redirect takes any query
    redirect = await app_client.get(f"/e/{code}?foo=bar&af=1")
    assert redirect.status_code == 302, redirect.text
    # the dashboard's pages are another router, left as they were
    page = await app_client.get("/dashboard/login?foo=bar")
    assert page.status_code != 422, page.text
