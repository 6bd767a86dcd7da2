"""Networks on real Postgres and Redis: a network's key sees and manages its members' links and
reports, and nothing of anyone else; it never requests a member's withdrawal."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from tests.support.accounts import bearer
from tests.support.orders import (
    add_click,
    ensure_default_plan,
    new_link,
    new_merchant,
    order_body,
    signed,
)

LINKS = "/api/v1/links"


async def publisher(
    client: httpx.AsyncClient, admin_key: str, kind: str = "publisher", network: int | None = None
) -> tuple[int, str]:
    """A new publisher (or network) and a key of its own."""
    body: dict[str, Any] = {"name": f"Net {uuid.uuid4().hex[:6]}", "kind": kind}
    if network is not None:
        body["network_id"] = network
    created = await client.post("/api/v1/publishers", json=body, headers=bearer(admin_key))
    assert created.status_code == 201, created.text
    publisher_id: int = created.json()["id"]
    key = await client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    assert key.status_code == 201, key.text
    return publisher_id, key.json()["key"]


@dataclass
class World:
    network: int
    network_key: str
    member: int
    member_key: str
    second_member: int
    loner: int
    loner_key: str
    other_network_key: str
    other_member: int


@pytest.fixture
async def world(app_client: httpx.AsyncClient, admin_key: str) -> World:
    network, network_key = await publisher(app_client, admin_key, "network")
    member, member_key = await publisher(app_client, admin_key, network=network)
    second_member, _ = await publisher(app_client, admin_key, network=network)
    loner, loner_key = await publisher(app_client, admin_key)
    other_network, other_network_key = await publisher(app_client, admin_key, "network")
    other_member, _ = await publisher(app_client, admin_key, network=other_network)
    return World(
        network,
        network_key,
        member,
        member_key,
        second_member,
        loner,
        loner_key,
        other_network_key,
        other_member,
    )


async def create(
    client: httpx.AsyncClient, key: str, publisher_id: int | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"destination": "https://shop.example.com/net"}
    if publisher_id is not None:
        body["publisher_id"] = publisher_id
    return await client.post(LINKS, json=body, headers=bearer(key))


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


async def test_a_network_lists_its_members_only(
    app_client: httpx.AsyncClient, world: World
) -> None:
    listed = await app_client.get("/api/v1/publishers", headers=bearer(world.network_key))
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["items"]] == [world.member, world.second_member]
    assert all(p["network_id"] == world.network for p in listed.json()["items"])
    got = await app_client.get(
        f"/api/v1/publishers/{world.member}", headers=bearer(world.network_key)
    )
    assert got.status_code == 200 and got.json()["id"] == world.member
    for hidden in (world.loner, world.other_member, 10**12):
        assert_not_found(
            await app_client.get(f"/api/v1/publishers/{hidden}", headers=bearer(world.network_key))
        )
    # a key of a publisher that is not a network: admin-only, as before
    for key in (world.loner_key, world.member_key):
        refused = await app_client.get("/api/v1/publishers", headers=bearer(key))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


async def test_a_network_creates_lists_and_updates_member_links(
    app_client: httpx.AsyncClient, world: World, pool: Pool
) -> None:
    own = await create(app_client, world.network_key)
    assert own.status_code == 201 and own.json()["publisher_id"] == world.network
    for_member = await create(app_client, world.network_key, world.member)
    assert for_member.status_code == 201, for_member.text
    assert for_member.json()["publisher_id"] == world.member
    by_member = await create(app_client, world.member_key)
    assert by_member.status_code == 201
    loners = await create(app_client, world.loner_key)
    for outsider in (world.loner, world.other_member, 10**12):
        assert_not_found(await create(app_client, world.network_key, outsider))

    everything = await app_client.get(LINKS, headers=bearer(world.network_key))
    assert everything.status_code == 200, everything.text
    assert [(link["code"], link["publisher_id"]) for link in everything.json()["items"]] == [
        (own.json()["code"], world.network),
        (for_member.json()["code"], world.member),
        (by_member.json()["code"], world.member),
    ]
    members_only = await app_client.get(
        LINKS, params={"publisher_id": world.member}, headers=bearer(world.network_key)
    )
    assert [link["code"] for link in members_only.json()["items"]] == [
        for_member.json()["code"],
        by_member.json()["code"],
    ]
    for outsider in (world.loner, world.other_member):
        assert_not_found(
            await app_client.get(
                LINKS, params={"publisher_id": outsider}, headers=bearer(world.network_key)
            )
        )

    # a member's link: read and changed by the network's key, the audit entry the member's
    code = by_member.json()["code"]
    changed = await app_client.patch(
        f"{LINKS}/{code}", json={"status": "disabled"}, headers=bearer(world.network_key)
    )
    assert changed.status_code == 200, changed.text
    entry = await pool.fetchrow(
        """SELECT actor_role, publisher_id, after FROM audit_log
           WHERE target_kind = 'link' AND target_id = $1 AND action = 'link.update'""",
        code,
    )
    assert entry is not None
    assert (entry["actor_role"], entry["publisher_id"]) == ("publisher", world.member)
    assert json.loads(entry["after"])["status"] == "disabled"

    # nobody else's: another network, the loner, and a member (not a network) up the tree
    for key, hidden in [
        (world.network_key, loners.json()["code"]),
        (world.other_network_key, code),
        (world.loner_key, code),
        (world.member_key, own.json()["code"]),
    ]:
        assert_not_found(await app_client.get(f"{LINKS}/{hidden}", headers=bearer(key)))
        assert_not_found(
            await app_client.patch(
                f"{LINKS}/{hidden}", json={"status": "archived"}, headers=bearer(key)
            )
        )


async def test_a_plain_publisher_keeps_its_own_scope(
    app_client: httpx.AsyncClient, world: World
) -> None:
    mine = await create(app_client, world.member_key)
    listed = await app_client.get(LINKS, headers=bearer(world.member_key))
    assert [link["code"] for link in listed.json()["items"]] == [mine.json()["code"]]
    for other in (world.network, world.second_member, world.loner):
        assert_not_found(await create(app_client, world.member_key, other))
        assert_not_found(
            await app_client.get(
                "/api/v1/reports/traffic",
                params={"publisher_id": other},
                headers=bearer(world.member_key),
            )
        )


async def test_a_network_reads_member_reports_and_money(
    app_client: httpx.AsyncClient, world: World
) -> None:
    for path in ("/api/v1/reports/traffic", "/api/v1/reports/overview", "/api/v1/money/balance"):
        read = await app_client.get(
            path, params={"publisher_id": world.member}, headers=bearer(world.network_key)
        )
        assert read.status_code == 200, (path, read.text)
        if "publisher_id" in read.json():
            assert read.json()["publisher_id"] == world.member
        for outsider in (world.loner, world.other_member):
            assert_not_found(
                await app_client.get(
                    path, params={"publisher_id": outsider}, headers=bearer(world.network_key)
                )
            )


async def test_a_network_cannot_withdraw_for_a_member(
    app_client: httpx.AsyncClient, world: World
) -> None:
    refused = await app_client.post(
        "/api/v1/money/withdrawals",
        json={"publisher_id": world.member},
        headers=bearer(world.network_key),
    )
    # the network sees its member: the answer says the rule, not "does not exist"
    assert refused.status_code == 403, refused.text
    assert refused.json()["message"] == (
        "a network cannot request its members' withdrawals: each publisher requests its own"
    )
    # a publisher outside the network still answers like one that does not exist
    assert_not_found(
        await app_client.post(
            "/api/v1/money/withdrawals",
            json={"publisher_id": world.loner},
            headers=bearer(world.network_key),
        )
    )
    # its own request is judged on its own balance (refused here: nothing to withdraw), not
    # on the scope
    own = await app_client.post(
        "/api/v1/money/withdrawals", json={}, headers=bearer(world.network_key)
    )
    assert own.status_code != 404, own.text


async def test_a_network_reads_a_member_order_by_either_id(
    app_client: httpx.AsyncClient, world: World, pool: Pool
) -> None:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant_id, secret = await new_merchant(conn)
        link = await new_link(conn, world.member)
        click_id = await add_click(conn, link, datetime.now(UTC) - timedelta(hours=1))
    order_ref = f"NET-{uuid.uuid4().hex[:8]}"
    body = order_body(order_ref, click_id, datetime.now(UTC), "25.00")
    reported = await app_client.post(
        "/api/v1/postback", content=body, headers=signed(merchant_id, secret, body)
    )
    assert reported.status_code in (200, 201), reported.text
    own = await app_client.get(f"/api/v1/orders/{order_ref}", headers=bearer(world.member_key))
    assert own.status_code == 200, own.text
    order_id = own.json()["id"]
    for ident in (order_ref, str(order_id)):
        seen = await app_client.get(f"/api/v1/orders/{ident}", headers=bearer(world.network_key))
        assert seen.status_code == 200, seen.text
        assert seen.json()["publisher_id"] == world.member
        for outsider in (world.loner_key, world.other_network_key):
            assert_not_found(
                await app_client.get(f"/api/v1/orders/{ident}", headers=bearer(outsider))
            )


async def test_a_network_cannot_be_a_member(
    app_client: httpx.AsyncClient, admin_key: str, world: World
) -> None:
    refused = await app_client.post(
        "/api/v1/publishers",
        json={"name": "x", "kind": "network", "network_id": world.network},
        headers=bearer(admin_key),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["message"] == (
        "network_id: a network cannot be a member of another network: leave network_id out, "
        "or create a publisher"
    )


async def test_a_member_names_a_network_not_a_plain_publisher(
    app_client: httpx.AsyncClient, admin_key: str, world: World
) -> None:
    refused = await app_client.post(
        "/api/v1/publishers",
        json={"name": "x", "network_id": world.loner},
        headers=bearer(admin_key),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["message"] == (
        f"network_id: publisher {world.loner} is not a network: a member's network_id names "
        "a publisher of kind network"
    )
    missing = await app_client.post(
        "/api/v1/publishers",
        json={"name": "x", "network_id": 2**63 - 1},
        headers=bearer(admin_key),
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["message"] == f"network_id: network {2**63 - 1} does not exist"


async def test_a_network_reads_its_members_audit_entries(
    app_client: httpx.AsyncClient, world: World
) -> None:
    # one link each: the network's own and its member's, each an audit entry of its owner
    assert (await create(app_client, world.network_key)).status_code == 201
    assert (await create(app_client, world.member_key)).status_code == 201
    assert (await create(app_client, world.loner_key)).status_code == 201

    def owners(response: httpx.Response) -> set[int]:
        assert response.status_code == 200, response.text
        return {item["publisher_id"] for item in response.json()["items"]}

    audit = "/api/v1/audit"
    key = bearer(world.network_key)
    one = await app_client.get(audit, params={"publisher_id": world.member}, headers=key)
    assert owners(one) == {world.member}
    every = await app_client.get(audit, headers=key)
    assert owners(every) == {world.network, world.member, world.second_member}
    # the newest first, across the publishers merged
    ids = [item["id"] for item in every.json()["items"]]
    assert ids == sorted(ids, reverse=True)
    # paged by one: the same entries, in the same order
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            params["before_id"] = cursor
        page = (await app_client.get(audit, params=params, headers=key)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_before_id"]
        if cursor is None:
            break
    assert seen == ids
    assert_not_found(await app_client.get(audit, params={"publisher_id": world.loner}, headers=key))
    assert_not_found(
        await app_client.get(audit, params={"publisher_id": world.other_member}, headers=key)
    )
    # a member's key still reads only its own
    mine = await app_client.get(audit, headers=bearer(world.member_key))
    assert owners(mine) == {world.member}
