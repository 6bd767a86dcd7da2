"""The admin and publisher API on real Postgres and Redis: every error case, and isolation."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.core.db import Pool


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_publisher(client: httpx.AsyncClient, admin_key: str, name: str = "Pub") -> int:
    response = await client.post(
        "/api/v1/publishers", json={"name": name}, headers=bearer(admin_key)
    )
    assert response.status_code == 201, response.text
    publisher_id: int = response.json()["id"]
    return publisher_id


async def new_publisher_key(client: httpx.AsyncClient, admin_key: str, publisher_id: int) -> str:
    response = await client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture
async def publisher_key(app_client: httpx.AsyncClient, admin_key: str) -> str:
    publisher_id = await new_publisher(app_client, admin_key)
    return await new_publisher_key(app_client, admin_key, publisher_id)


def assert_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == kind
    assert isinstance(body["message"], str) and body["message"]
    return body


async def test_publisher_and_link_lifecycle(
    app_client: httpx.AsyncClient, admin_key: str, publisher_key: str
) -> None:
    me = await app_client.get("/api/v1/me", headers=bearer(publisher_key))
    assert me.status_code == 200
    assert me.json()["role"] == "publisher"

    created = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://shop.example.com/item/1?color=red", "code": "abcD12345"},
        headers=bearer(publisher_key),
    )
    assert created.status_code == 201, created.text
    link = created.json()
    assert link["code"] == "abcD12345"
    assert link["status"] == "active"
    assert link["short_url"].endswith("/e/abcD12345")
    assert link["destination"] == "https://shop.example.com/item/1?color=red"

    got = await app_client.get("/api/v1/links/abcD12345", headers=bearer(publisher_key))
    assert got.json() == link

    disabled = await app_client.patch(
        "/api/v1/links/abcD12345", json={"status": "disabled"}, headers=bearer(publisher_key)
    )
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert disabled.json()["expires_at"] is None

    past = await app_client.patch(
        "/api/v1/links/abcD12345",
        json={"expires_at": "2020-01-01T00:00:00Z"},
        headers=bearer(publisher_key),
    )
    assert past.status_code == 422 and "must be in the future" in past.json()["message"]
    expiring = await app_client.patch(
        "/api/v1/links/abcD12345",
        json={"expires_at": "2090-01-01T00:00:00Z"},
        headers=bearer(publisher_key),
    )
    assert expiring.json()["expires_at"].startswith("2090-01-01T00:00:00")
    assert expiring.json()["status"] == "disabled"  # untouched when not sent

    cleared = await app_client.patch(
        "/api/v1/links/abcD12345",
        json={"expires_at": None, "status": "active"},
        headers=bearer(publisher_key),
    )
    assert cleared.json()["expires_at"] is None
    assert cleared.json()["status"] == "active"


async def test_random_codes_and_pagination(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    codes = set()
    for i in range(7):
        response = await app_client.post(
            "/api/v1/links",
            json={"destination": f"https://example.com/p/{i}"},
            headers=bearer(publisher_key),
        )
        assert response.status_code == 201
        code = response.json()["code"]
        assert code.isalnum() and len(code) == 9
        codes.add(code)
    assert len(codes) == 7

    seen: list[str] = []
    after = 0
    while True:
        page = await app_client.get(
            "/api/v1/links", params={"limit": 3, "after": after}, headers=bearer(publisher_key)
        )
        assert page.status_code == 200
        body = page.json()
        seen += [item["code"] for item in body["items"]]
        if body["next_after"] is None:
            break
        after = body["next_after"]
    assert seen and set(seen) == codes and len(seen) == 7


async def test_admin_lists_publishers_and_makes_networks(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    network = await app_client.post(
        "/api/v1/publishers", json={"name": "Net", "kind": "network"}, headers=bearer(admin_key)
    )
    assert network.status_code == 201
    child = await app_client.post(
        "/api/v1/publishers",
        json={"name": "Child", "network_id": network.json()["id"]},
        headers=bearer(admin_key),
    )
    assert child.status_code == 201
    assert child.json()["network_id"] == network.json()["id"]

    listed = await app_client.get(
        "/api/v1/publishers", params={"limit": 500}, headers=bearer(admin_key)
    )
    ids = {p["id"] for p in listed.json()["items"]}
    assert {network.json()["id"], child.json()["id"]} <= ids

    not_a_network = await app_client.post(
        "/api/v1/publishers",
        json={"name": "Orphan", "network_id": child.json()["id"]},
        headers=bearer(admin_key),
    )
    assert_error(not_a_network, 422, "invalid")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, bearer("ctk_wrong")],
)
async def test_missing_or_wrong_key_is_401(
    app_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, url in [("GET", "/api/v1/links"), ("POST", "/api/v1/publishers")]:
        response = await app_client.request(method, url, headers=headers, json={"name": "x"})
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_publisher_cannot_use_admin_routes(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    response = await app_client.post(
        "/api/v1/publishers", json={"name": "x"}, headers=bearer(publisher_key)
    )
    assert_error(response, 403, "forbidden")
    assert_error(
        await app_client.get("/api/v1/publishers", headers=bearer(publisher_key)),
        403,
        "forbidden",
    )


async def test_publishers_are_isolated(
    app_client: httpx.AsyncClient, admin_key: str, publisher_key: str, pool: Pool
) -> None:
    other_id = await new_publisher(app_client, admin_key, "Other")
    other_key = await new_publisher_key(app_client, admin_key, other_id)
    created = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/mine", "code": "MineOnly1"},
        headers=bearer(publisher_key),
    )
    assert created.status_code == 201

    assert_error(
        await app_client.get("/api/v1/links/MineOnly1", headers=bearer(other_key)),
        404,
        "not_found",
    )
    patched = await app_client.patch(
        "/api/v1/links/MineOnly1", json={"status": "disabled"}, headers=bearer(other_key)
    )
    assert_error(patched, 404, "not_found")
    listed = await app_client.get("/api/v1/links", headers=bearer(other_key))
    assert listed.json() == {"items": [], "next_after": None}
    foreign_owner = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/x", "publisher_id": other_id + 10_000},
        headers=bearer(publisher_key),
    )
    assert_error(foreign_owner, 404, "not_found")
    status = await pool.fetchval("SELECT status FROM links WHERE code = 'MineOnly1'")
    assert status == "active"  # the other publisher's PATCH changed nothing


async def test_taken_code_is_409_and_nothing_changes(
    app_client: httpx.AsyncClient, publisher_key: str, pool: Pool
) -> None:
    first = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/first", "code": "Taken42"},
        headers=bearer(publisher_key),
    )
    assert first.status_code == 201
    second = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/second", "code": "Taken42"},
        headers=bearer(publisher_key),
    )
    assert_error(second, 409, "conflict")
    destination = await pool.fetchval("SELECT destination FROM links WHERE code = 'Taken42'")
    assert destination == "https://example.com/first"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"destination": "ftp://example.com/x"}, "destination"),
        ({"destination": "https://evil.example.org/x"}, "destination"),
        ({"destination": "https://example.com.evil.org/x"}, "destination"),
        ({"destination": "https://user:pw@example.com/"}, "destination"),
        ({"destination": "https://exa mple.com/"}, "destination"),
        ({"destination": "javascript:alert(1)"}, "destination"),
        ({"destination": "https://example.com:99999/"}, "destination"),
        ({"destination": "//example.com/x"}, "destination"),
        ({"destination": "https://example.com/" + "a" * 3000}, "destination"),
        ({"destination": "https://example.com/", "code": "bad-code"}, "code"),
        ({"destination": "https://example.com/", "code": "x" * 33}, "code"),
        ({"destination": "https://example.com/", "code": ""}, "code"),
        ({"destination": "https://example.com/", "expires_at": "tomorrow"}, "expires_at"),
        ({"destination": "https://example.com/", "expires_at": "2030-01-01T00:00:00"}, "expires"),
        ({"code": "abc"}, "destination"),
        ({"destination": 42}, "destination"),
    ],
)
async def test_invalid_link_fields_are_422(
    app_client: httpx.AsyncClient, publisher_key: str, body: dict[str, Any], field: str
) -> None:
    response = await app_client.post("/api/v1/links", json=body, headers=bearer(publisher_key))
    error = assert_error(response, 422, "invalid")
    assert field in error["message"]


async def test_malformed_bodies_and_params_are_4xx(
    app_client: httpx.AsyncClient, admin_key: str, publisher_key: str
) -> None:
    not_json = await app_client.post(
        "/api/v1/links",
        content=b"{not json",
        headers={**bearer(publisher_key), "content-type": "application/json"},
    )
    assert_error(not_json, 422, "invalid")
    assert_error(
        await app_client.get("/api/v1/links", params={"limit": 0}, headers=bearer(publisher_key)),
        422,
        "invalid",
    )
    assert_error(
        await app_client.get("/api/v1/links", params={"after": "x"}, headers=bearer(publisher_key)),
        422,
        "invalid",
    )
    assert_error(
        await app_client.patch("/api/v1/links/abc", json={}, headers=bearer(publisher_key)),
        422,
        "invalid",
    )
    assert_error(
        await app_client.patch(
            "/api/v1/links/abc", json={"status": "deleted"}, headers=bearer(publisher_key)
        ),
        422,
        "invalid",
    )
    assert_error(
        await app_client.get("/api/v1/publishers/999999999", headers=bearer(admin_key)),
        404,
        "not_found",
    )
    assert_error(
        await app_client.post(
            "/api/v1/publishers/999999999/api-keys", json={}, headers=bearer(admin_key)
        ),
        404,
        "not_found",
    )
    assert_error(
        await app_client.post("/api/v1/publishers", json={"name": ""}, headers=bearer(admin_key)),
        422,
        "invalid",
    )
    assert_error(
        await app_client.get("/api/v1/links/no-such_code!", headers=bearer(publisher_key)),
        404,
        "not_found",
    )
    assert_error(await app_client.get("/api/v1/nothing-here"), 404, "not_found")
    admin_without_owner = await app_client.post(
        "/api/v1/links", json={"destination": "https://example.com/"}, headers=bearer(admin_key)
    )
    assert_error(admin_without_owner, 422, "invalid")


async def test_openapi_and_docs_are_served(app_client: httpx.AsyncClient) -> None:
    spec = await app_client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/links" in spec.json()["paths"]
    docs = await app_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_nothing_from_elsewhere(
    app_client: httpx.AsyncClient, page: str
) -> None:
    """Every script, style sheet and icon of the docs pages is served by the app itself (from
    the installed fastapi-offline package): they work with no internet access."""
    html = await app_client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert urls
    assert not [url for url in urls if "//" in url], html.text
    assets = {url for url in urls if url.startswith("/docs/assets/")}
    expected = {
        "/docs": {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css"},
        "/redoc": {"redoc.standalone.js": "javascript"},
    }[page]
    assert {url.rsplit("/", 1)[1] for url in assets} >= set(expected)
    for url in assets | {"/docs/assets/favicon.png"}:
        served = await app_client.get(url)
        assert served.status_code == 200, url
        kind = expected.get(url.rsplit("/", 1)[1], "image/png")
        assert kind in served.headers["content-type"], (url, served.headers["content-type"])
        assert len(served.content) > 1000
    assert "/openapi.json" in html.text


async def test_keys_are_stored_hashed(
    app_client: httpx.AsyncClient, publisher_key: str, pool: Pool
) -> None:
    rows = await pool.fetch("SELECT key_hash, key_prefix FROM api_keys")
    assert rows
    for row in rows:
        assert publisher_key.encode() not in bytes(row["key_hash"])
        assert len(row["key_prefix"]) < 16
