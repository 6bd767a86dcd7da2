"""The caps API and CLI on real Postgres: who may set and read caps, every field's rule in
words, usage in the current window, audit entries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.settings import Settings
from tests.integration.test_cli import run_cli
from tests.support.accounts import bearer

CAPS = "/api/v1/caps"


async def publisher(
    client: httpx.AsyncClient, admin_key: str, kind: str = "publisher", network: int | None = None
) -> tuple[int, str]:
    """A new publisher (or network) and a key of its own."""
    body: dict[str, Any] = {"name": f"Caps {uuid.uuid4().hex[:6]}", "kind": kind}
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
    client: httpx.AsyncClient
    admin: str
    publisher_id: int
    key: str
    link: str  # a code of the publisher's link
    other_id: int
    other_key: str
    other_link: str

    async def create(self, key: str | None = None, **body: Any) -> httpx.Response:
        body.setdefault("publisher_id", self.publisher_id)
        return await self.client.post(CAPS, json=body, headers=bearer(key or self.admin))

    async def created(self, **body: Any) -> dict[str, Any]:
        response = await self.create(**body)
        assert response.status_code == 201, response.text
        found: dict[str, Any] = response.json()
        return found


async def link_of(client: httpx.AsyncClient, key: str) -> str:
    made = await client.post(
        "/api/v1/links", json={"destination": "https://shop.example.com/a"}, headers=bearer(key)
    )
    assert made.status_code == 201, made.text
    code: str = made.json()["code"]
    return code


@pytest.fixture
async def world(app_client: httpx.AsyncClient, admin_key: str) -> World:
    publisher_id, key = await publisher(app_client, admin_key)
    other_id, other_key = await publisher(app_client, admin_key)
    return World(
        app_client,
        admin_key,
        publisher_id,
        key,
        await link_of(app_client, key),
        other_id,
        other_key,
        await link_of(app_client, other_key),
    )


async def test_each_kind_is_created_listed_read_and_changed(world: World, pool: Pool) -> None:
    clicks = await world.created(
        metric="clicks", period="day", cap=1000, fallback_url="https://example.com/full"
    )
    assert clicks["scope"] == "publisher"
    assert clicks["cap"] == "1000"
    assert clicks["fallback_url"] == "https://example.com/full"
    assert (clicks["usage"]["used"], clicks["usage"]["remaining"]) == ("0", "1000")
    orders = await world.created(metric="orders", period="month", cap=3, link=world.link)
    assert (orders["scope"], orders["link"], orders["campaign"]) == ("link", world.link, None)
    assert orders["usage"]["used"] == "0"
    assert orders["usage"]["remaining"] == "3"
    commission = await world.created(
        metric="commission", period="calculation_period", cap="125.50", campaign="spring"
    )
    assert (commission["scope"], commission["campaign"]) == ("campaign", "spring")
    assert commission["cap"] == "125.50"
    assert commission["usage"]["used"] == "0.00"
    starts = commission["usage"]["window_starts_at"]
    assert starts[8:10] == "10" and starts[10:19] == "T00:00:00"  # the period's 10th, midnight

    listed = await world.client.get(
        CAPS, params={"publisher_id": world.publisher_id}, headers=bearer(world.admin)
    )
    assert [c["id"] for c in listed.json()["items"]] == [
        clicks["id"],
        orders["id"],
        commission["id"],
    ]
    only = await world.client.get(
        CAPS,
        params={"publisher_id": world.publisher_id, "metric": "commission"},
        headers=bearer(world.admin),
    )
    assert [c["id"] for c in only.json()["items"]] == [commission["id"]]
    one = await world.client.get(f"{CAPS}/{orders['id']}", headers=bearer(world.admin))
    assert one.json() == orders

    changed = await world.client.patch(
        f"{CAPS}/{commission['id']}", json={"cap": 99.5}, headers=bearer(world.admin)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["cap"] == "99.50"
    cleared = await world.client.patch(
        f"{CAPS}/{clicks['id']}", json={"fallback_url": None}, headers=bearer(world.admin)
    )
    assert cleared.json()["fallback_url"] is None
    for step, enabled in (("disable", False), ("disable", False), ("enable", True)):
        done = await world.client.post(f"{CAPS}/{orders['id']}/{step}", headers=bearer(world.admin))
        assert done.status_code == 200, done.text
        assert done.json()["enabled"] is enabled
        assert (done.json()["disabled_at"] is None) is enabled
    disabled = await world.client.patch(
        f"{CAPS}/{orders['id']}", json={"enabled": False}, headers=bearer(world.admin)
    )
    enabled_only = await world.client.get(
        CAPS,
        params={"publisher_id": world.publisher_id, "enabled": "true"},
        headers=bearer(world.admin),
    )
    assert disabled.json()["enabled"] is False
    assert orders["id"] not in [c["id"] for c in enabled_only.json()["items"]]

    # Every change in the audit log, once (disabling a disabled cap changed nothing).
    actions = await pool.fetch(
        "SELECT action, before, after FROM audit_log"
        " WHERE target_kind = 'cap' AND publisher_id = $1 ORDER BY id",
        world.publisher_id,
    )
    assert [a["action"] for a in actions] == [
        "cap.create",
        "cap.create",
        "cap.create",
        "cap.update",
        "cap.update",
        "cap.disable",
        "cap.enable",
        "cap.disable",
    ]
    assert '"cap": 9950' in actions[3]["after"]


BAD_FIELDS = [
    ({"metric": "leads"}, "body.metric: must be one of 'clicks', 'orders' or 'commission'"),
    ({"cap": -1}, "cap: must be 0 or more"),
    ({"cap": 2.5}, "cap: must be a whole number of orders"),
    ({"metric": "commission", "cap": "1.005"}, "cap: must be US dollars with at most 2 digits"),
    ({"fallback_url": "https://example.com/x"}, "fallback_url: only a click cap has one"),
    ({"metric": "clicks", "fallback_url": "https://elsewhere.example.org/"}, "fallback_url: host"),
    ({"metric": "clicks", "fallback_url": "ftp://example.com/"}, "fallback_url: "),
    ({"link": "OTHER"}, "link: publisher {p} has no link with code"),
    ({"link": "LINK", "campaign": "spring"}, "campaign: a cap counts one link or one campaign"),
    ({"campaign": "spr\u200bing"}, "campaign: contains a control or invisible character"),
    ({"campaign": ""}, "campaign: must not be empty"),
    ({"period": "week"}, "body.period: must be one of"),
    # Past what a cap can hold, whatever the form: never a 500 from rounding a huge number.
    ({"metric": "commission", "cap": "100000000000000000000000000"}, "cap: is too large"),
    ({"metric": "commission", "cap": "1e30"}, "cap: is too large"),
    ({"metric": "commission", "cap": 10**30}, "cap: is too large"),
    ({"metric": "clicks", "cap": "1e30"}, "cap: is too large"),
    ({"cap": "9223372036854775808"}, "cap: is too large"),
]


@pytest.mark.parametrize(("fields", "words"), BAD_FIELDS)
async def test_a_bad_field_is_refused_in_words(
    world: World, fields: dict[str, Any], words: str
) -> None:
    body = {"metric": "orders", "period": "day", "cap": 3, **fields}
    if body.get("link") == "OTHER":
        body["link"] = world.other_link
    elif body.get("link") == "LINK":
        body["link"] = world.link
    response = await world.create(**body)
    assert response.status_code == 422, response.text
    answer = response.json()
    shown = answer["message"] if "details" not in answer else str(answer)
    assert words.format(p=world.publisher_id) in shown, answer


async def test_a_publisher_key_reads_its_caps_and_cannot_change_them(world: World) -> None:
    cap = await world.created(metric="orders", period="day", cap=5)
    mine = await world.client.get(CAPS, headers=bearer(world.key))
    assert [c["id"] for c in mine.json()["items"]] == [cap["id"]]
    read = await world.client.get(f"{CAPS}/{cap['id']}", headers=bearer(world.key))
    assert read.status_code == 200
    assert read.json()["usage"]["used"] == "0"
    refused = [
        await world.create(world.key, metric="orders", period="day", cap=50),
        await world.client.patch(
            f"{CAPS}/{cap['id']}", json={"cap": 50}, headers=bearer(world.key)
        ),
        await world.client.post(f"{CAPS}/{cap['id']}/disable", headers=bearer(world.key)),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert "operator's control of spend" in answer.json()["message"]
    # Another publisher's cap does not exist for this key.
    theirs = await world.created(metric="orders", period="day", cap=1, publisher_id=world.other_id)
    for answer in (
        await world.client.get(f"{CAPS}/{theirs['id']}", headers=bearer(world.key)),
        await world.client.post(f"{CAPS}/{theirs['id']}/enable", headers=bearer(world.key)),
        await world.create(
            world.key, metric="orders", period="day", cap=1, publisher_id=world.other_id
        ),
    ):
        assert answer.status_code == 404, answer.text
    no_publisher = await world.client.post(
        CAPS, json={"metric": "orders", "period": "day", "cap": 1}, headers=bearer(world.admin)
    )
    assert no_publisher.status_code == 422
    assert "publisher_id" in no_publisher.text


async def test_a_network_key_sets_its_members_caps(world: World) -> None:
    network, network_key = await publisher(world.client, world.admin, "network")
    member, _ = await publisher(world.client, world.admin, network=network)
    made = await world.create(
        network_key, metric="orders", period="day", cap=2, publisher_id=member
    )
    assert made.status_code == 201, made.text
    changed = await world.client.patch(
        f"{CAPS}/{made.json()['id']}", json={"cap": 4}, headers=bearer(network_key)
    )
    assert changed.json()["cap"] == "4"
    own = await world.create(
        network_key, metric="orders", period="day", cap=2, publisher_id=network
    )
    assert own.status_code == 403
    stranger = await world.create(network_key, metric="orders", period="day", cap=2)
    assert stranger.status_code == 404


async def test_the_cli_lists_adds_changes_and_disables_caps(
    database_url: str, world: World, pool: Pool
) -> None:
    base = ["--publisher-id", str(world.publisher_id)]
    added = run_cli(
        database_url,
        "add-cap",
        *base,
        "--metric",
        "commission",
        "--period",
        "month",
        "--cap",
        "20.25",
    )
    assert added.returncode == 0, added.stderr
    assert "commission per month (all traffic): 0.00 of 20.25 used" in added.stdout
    cap_id = int(added.stdout.split(":")[0].removeprefix("cap "))
    changed = run_cli(database_url, "set-cap", str(cap_id), "--cap", "30")
    assert changed.returncode == 0, changed.stderr
    assert "0.00 of 30.00 used" in changed.stdout
    assert run_cli(database_url, "disable-cap", str(cap_id)).returncode == 0
    listed = run_cli(database_url, "caps", *base, "--metric", "commission")
    assert listed.returncode == 0, listed.stderr
    assert f"cap {cap_id}:" not in listed.stdout  # enabled caps only, by default
    everything = run_cli(database_url, "caps", *base, "--all")
    assert f"cap {cap_id}:" in everything.stdout and "disabled" in everything.stdout
    assert run_cli(database_url, "enable-cap", str(cap_id)).returncode == 0
    bad = run_cli(
        database_url, "add-cap", *base, "--metric", "orders", "--period", "day", "--cap", "1.5"
    )
    assert bad.returncode == 1
    assert "error: cap: must be a whole number of orders" in bad.stderr
    missing = run_cli(database_url, "add-cap", *base, "--period", "day", "--cap", "1")
    assert missing.returncode == 1
    assert "error: metric: required: --metric clicks | orders | commission" in missing.stderr
    huge = run_cli(database_url, "set-cap", str(cap_id), "--cap", "1e29")
    assert huge.returncode == 1 and "error: cap: is too large" in huge.stderr, huge.stderr
    nobody = ["--publisher-id", "999999999", "--metric", "clicks", "--period", "day"]
    unknown = run_cli(database_url, "add-cap", *nobody, "--cap", "5")
    assert unknown.returncode == 1, unknown.stderr
    assert unknown.stderr.strip() == "error: publisher 999999999 does not exist"
    listing = run_cli(database_url, "caps", "--publisher-id", "999999999")
    assert listing.returncode == 1 and "does not exist" in listing.stderr
    fallback = run_cli(
        database_url, "set-cap", str(cap_id), "--fallback-url", "https://example.com/"
    )
    assert fallback.returncode == 1
    assert "fallback_url: only a click cap has one" in fallback.stderr
    actions = await pool.fetch(
        "SELECT action, actor FROM audit_log"
        " WHERE target_kind = 'cap' AND target_id = $1 ORDER BY id",
        str(cap_id),
    )
    assert [a["action"] for a in actions] == [
        "cap.create",
        "cap.update",
        "cap.disable",
        "cap.enable",
    ]
    assert all(a["actor"].startswith("cli:") for a in actions)


async def test_a_click_caps_usage_is_read_from_the_redirects_counter(
    world: World, redis: aioredis.Redis, settings: Settings
) -> None:
    cap = await world.created(metric="clicks", period="month", cap=50, link=world.link)
    window = cap["usage"]["window_starts_at"][:10].replace("-", "")
    key = RedisKeys(settings.key_prefix).cap_clicks(world.publisher_id, cap["id"], window)
    await redis.set(key, 17)
    read = await world.client.get(f"{CAPS}/{cap['id']}", headers=bearer(world.key))
    assert (read.json()["usage"]["used"], read.json()["usage"]["remaining"]) == ("17", "33")
