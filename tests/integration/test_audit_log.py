"""The audit log on real Postgres: every administrative change, through the API and the CLI,
appends one entry with the target's state before and after, in the change's transaction (a
change refused writes none); a publisher key reads only its own entries; no key or secret
ever reaches the table; the listing's filters and cursor."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file
from tests.integration.test_api import bearer, new_publisher, new_publisher_key
from tests.integration.test_cli import run_cli
from tests.integration.test_money_withdrawals import Payee, account, clock  # noqa: F401
from tests.support.orders import at

AUDIT = "/api/v1/audit"


async def entries(pool: Pool, target_kind: str, target_id: object) -> list[dict[str, Any]]:
    """The target's entries, oldest first, as stored."""
    rows = await pool.fetch(
        """SELECT actor, actor_role, publisher_id, action, before::text AS before,
                  after::text AS after
             FROM audit_log WHERE target_kind = $1 AND target_id = $2 ORDER BY id""",
        target_kind,
        str(target_id),
    )
    return [
        {
            **dict(r),
            "before": None if r["before"] is None else json.loads(r["before"]),
            "after": None if r["after"] is None else json.loads(r["after"]),
        }
        for r in rows
    ]


async def actions(pool: Pool, target_kind: str, target_id: object) -> list[str]:
    return [e["action"] for e in await entries(pool, target_kind, target_id)]


async def assert_no_secret(pool: Pool, *secrets: str) -> None:
    """No key or secret anywhere in the audit log's text (nor a key's hash-worthy tail)."""
    text = await pool.fetchval(
        "SELECT coalesce(string_agg(audit_log::text, ' '), '') FROM audit_log"
    )
    for secret in secrets:
        assert secret not in text
        assert secret[12:] not in text  # not even past a shown prefix


def cli(database_url: str, *args: str) -> str:
    result = run_cli(database_url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def key_id(pool: Pool, key: str) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM api_keys WHERE key_prefix = $1", key[: len("ctk_") + 6]
    )
    return found


# -- API keys and publishers -------------------------------------------------------------------


async def test_api_publishers_and_keys(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    admin_id = await key_id(pool, admin_key)
    publisher_id = await new_publisher(app_client, admin_key, "Audited blog")
    [made] = await entries(pool, "publisher", publisher_id)
    assert made["action"] == "publisher.create" and made["before"] is None
    assert made["after"] == {
        "id": publisher_id,
        "name": "Audited blog",
        "kind": "publisher",
        "network_id": None,
    }
    assert (made["actor"], made["actor_role"], made["publisher_id"]) == (
        f"key:{admin_id}",
        "admin",
        publisher_id,
    )

    key = await new_publisher_key(app_client, admin_key, publisher_id)
    kid = await key_id(pool, key)
    [created] = await entries(pool, "api_key", kid)
    assert created["action"] == "api_key.create" and created["publisher_id"] == publisher_id
    assert created["after"]["prefix"] == key[:10] and created["after"]["status"] == "active"

    rotated = await app_client.post(
        f"/api/v1/api-keys/{kid}/rotate", json={"overlap_seconds": 60}, headers=bearer(key)
    )
    assert rotated.status_code == 201, rotated.text
    new_key, new_id = rotated.json()["key"], rotated.json()["id"]
    rotation = (await entries(pool, "api_key", kid))[-1]
    assert rotation["action"] == "api_key.rotate"
    assert rotation["actor_role"] == "publisher" and rotation["publisher_id"] == publisher_id
    assert rotation["before"]["replaced_by"] is None
    assert rotation["after"]["replaced_by"] == new_id and rotation["after"]["overlap_seconds"] == 60

    revoked = await app_client.delete(f"/api/v1/api-keys/{new_id}", headers=bearer(admin_key))
    assert revoked.status_code == 200
    [revocation] = await entries(pool, "api_key", new_id)
    assert revocation["action"] == "api_key.revoke"
    assert revocation["before"]["revoked_at"] is None
    assert revocation["after"]["status"] == "revoked" and revocation["after"]["revoked_at"]

    # Revoking it again changes nothing; revoking a key that does not exist fails: no entry.
    assert (
        await app_client.delete(f"/api/v1/api-keys/{new_id}", headers=bearer(admin_key))
    ).status_code == 200
    missing = await app_client.delete(f"/api/v1/api-keys/{2**62}", headers=bearer(admin_key))
    assert missing.status_code == 404
    assert await actions(pool, "api_key", new_id) == ["api_key.revoke"]
    assert await actions(pool, "api_key", 2**62) == []
    await assert_no_secret(pool, key, new_key, admin_key)


async def test_cli_accounts_and_keys(database_url: str, pool: Pool) -> None:
    admin_key = cli(database_url, "create-admin-key", "--name", "ops").strip().splitlines()[-1]
    admin_id = await key_id(pool, admin_key)
    [made] = await entries(pool, "api_key", admin_id)
    assert made["action"] == "api_key.create" and made["actor_role"] == "operator"
    assert made["actor"].startswith("cli:") and made["after"]["role"] == "admin"

    publisher_id = int(cli(database_url, "create-publisher", "Cli blog").split()[1])
    assert await actions(pool, "publisher", publisher_id) == ["publisher.create"]
    key = cli(database_url, "create-api-key", str(publisher_id)).strip().splitlines()[-1]
    kid = await key_id(pool, key)
    new_key = cli(database_url, "rotate-api-key", str(kid)).strip().splitlines()[-1]
    cli(database_url, "revoke-api-key", str(await key_id(pool, new_key)))
    assert await actions(pool, "api_key", kid) == ["api_key.create", "api_key.rotate"]
    assert await actions(pool, "api_key", await key_id(pool, new_key)) == ["api_key.revoke"]
    failed = run_cli(database_url, "revoke-api-key", str(2**62))
    assert failed.returncode == 1 and await actions(pool, "api_key", 2**62) == []
    await assert_no_secret(pool, admin_key, key, new_key)


# -- merchants ----------------------------------------------------------------------------------


async def test_merchant_changes_api_and_cli(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, database_url: str
) -> None:
    name = f"Audited shop {uuid.uuid4().hex[:8]}"
    response = await app_client.post(
        "/api/v1/merchants",
        json={"name": name, "hosts": ["a.example.com"]},
        headers=bearer(admin_key),
    )
    shop = response.json()
    mid, secrets = shop["id"], [shop["secret"]]
    url = f"/api/v1/merchants/{mid}"
    await app_client.put(
        f"{url}/hosts", json={"hosts": ["b.example.com"]}, headers=bearer(admin_key)
    )
    await app_client.post(f"{url}/disable", headers=bearer(admin_key))
    await app_client.post(f"{url}/disable", headers=bearer(admin_key))  # no change: no entry
    await app_client.post(f"{url}/enable", headers=bearer(admin_key))
    rotated = await app_client.post(
        f"{url}/rotate-secret", json={"overlap_seconds": 300}, headers=bearer(admin_key)
    )
    secrets.append(rotated.json()["secret"])
    refused = await app_client.post(
        f"{url}/rotate-secret", json={"overlap_seconds": 10**7}, headers=bearer(admin_key)
    )
    assert refused.status_code == 422

    cli(database_url, "disable-merchant", name)
    cli(database_url, "enable-merchant", name)
    out = cli(database_url, "rotate-merchant-secret", name, "--overlap-seconds", "60")
    secrets.append(out.strip().splitlines()[-1])
    cli(database_url, "set-merchant-hosts", name, "c.example.com")
    assert run_cli(database_url, "disable-merchant", "No such shop").returncode == 1

    found = await entries(pool, "merchant", mid)
    assert [e["action"] for e in found] == [
        "merchant.create",
        "merchant.set_hosts",
        "merchant.disable",
        "merchant.enable",
        "merchant.rotate_secret",
        "merchant.disable",
        "merchant.enable",
        "merchant.rotate_secret",
        "merchant.set_hosts",
    ]
    assert [e["actor_role"] for e in found] == ["admin"] * 5 + ["operator"] * 4
    assert found[1]["before"]["hosts"] == ["a.example.com"]
    assert found[1]["after"]["hosts"] == ["b.example.com"]
    assert found[2]["before"]["disabled_at"] is None and found[2]["after"]["disabled_at"]
    assert found[4]["before"]["previous_secret_until"] is None
    assert (
        found[4]["after"]["previous_secret_until"] and found[4]["after"]["overlap_seconds"] == 300
    )
    assert found[8]["after"]["hosts"] == ["c.example.com"]
    await assert_no_secret(pool, *secrets)


# -- plans --------------------------------------------------------------------------------------


async def test_plans_api_and_cli(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, database_url: str, tmp_path: Path
) -> None:
    plan = read_plan_file(DEFAULT_PLAN_FILE).model_dump(mode="json")
    day = "2097-03-10"  # a date no other test uses: plans are shared
    put = await app_client.put(
        f"/api/v1/plans/{day}", json={**plan, "effective_from": day}, headers=bearer(admin_key)
    )
    assert put.status_code == 201, put.text
    same = await app_client.put(
        f"/api/v1/plans/{day}", json={**plan, "effective_from": day}, headers=bearer(admin_key)
    )
    assert same.json()["outcome"] == "unchanged"  # no change: no entry
    renamed = {**plan, "effective_from": day, "name": "Renamed"}
    assert (
        await app_client.put(f"/api/v1/plans/{day}", json=renamed, headers=bearer(admin_key))
    ).status_code == 200
    bad = {**plan, "effective_from": day, "minimum_rate": "lots"}
    assert (
        await app_client.put(f"/api/v1/plans/{day}", json=bad, headers=bearer(admin_key))
    ).status_code == 422
    assert (
        await app_client.delete(f"/api/v1/plans/{day}", headers=bearer(admin_key))
    ).status_code == 204
    assert (
        await app_client.delete(f"/api/v1/plans/{day}", headers=bearer(admin_key))
    ).status_code == 404

    found = await entries(pool, "plan", day)
    assert [e["action"] for e in found] == ["plan.put", "plan.put", "plan.delete"]
    assert found[0]["before"] is None and found[0]["after"]["name"] == plan["name"]
    assert found[1]["before"]["name"] == plan["name"] and found[1]["after"]["name"] == "Renamed"
    assert found[2]["before"]["name"] == "Renamed" and found[2]["after"] is None

    later = "2098-03-10"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**plan, "effective_from": later}))
    cli(database_url, "load-plan", str(path))
    cli(database_url, "load-plan", str(path))  # unchanged: no entry
    [loaded] = await entries(pool, "plan", later)
    assert loaded["action"] == "plan.put" and loaded["actor_role"] == "operator"
    # Leave the session's plans as found (other tests list them).
    await pool.execute(
        "DELETE FROM commission_plans WHERE effective_from = $1", date.fromisoformat(later)
    )


# -- money: periods, withdrawals, orders ----------------------------------------------------------


async def test_money_changes(account: Payee, database_url: str) -> None:  # noqa: F811
    pool, client = account.pool, account.client
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    closes = await entries(pool, "period", "2019-03")
    mine = [e for e in closes if e["publisher_id"] == account.publisher_id]
    assert [e["action"] for e in mine] == ["period.close"]
    assert mine[0]["after"]["credited"] == "80.00" and mine[0]["after"]["period"] == "2019-03"
    again = len(await entries(pool, "period", "2019-03"))
    await account.close("2019-03")  # already closed: no entry
    assert len(await entries(pool, "period", "2019-03")) == again

    made = (await account.withdraw("50.00")).json()
    await account.step(made["id"], "approve")
    await account.step(made["id"], "pay", reference="TRX-1")
    assert (await account.step(made["id"], "approve")).status_code == 409  # refused: no entry
    other = (await account.withdraw("20.00")).json()
    assert (
        run_cli(database_url, "reject-withdrawal", str(other["id"]), "--reason", "no").returncode
        == 0
    )

    paid = await entries(pool, "withdrawal", made["id"])
    assert [e["action"] for e in paid] == [
        "withdrawal.request",
        "withdrawal.approve",
        "withdrawal.pay",
    ]
    assert paid[0]["actor_role"] == "publisher" and paid[0]["before"] is None
    assert paid[0]["after"]["amount"] == "50.00" and paid[0]["after"]["status"] == "requested"
    assert paid[1]["before"]["status"] == "requested" and paid[1]["after"]["status"] == "approved"
    assert paid[2]["after"]["payment_reference"] == "TRX-1"
    assert {e["publisher_id"] for e in paid} == {account.publisher_id}
    rejected = await entries(pool, "withdrawal", other["id"])
    assert [e["action"] for e in rejected] == ["withdrawal.request", "withdrawal.reject"]
    assert rejected[1]["actor_role"] == "operator" and rejected[1]["after"]["reject_reason"] == "no"

    ref = await account.order(at("2019-04-15T10:00:00"), "10.00")
    listed = (await account.get("/api/v1/orders", limit="500"))["items"]
    order_id = next(o["id"] for o in listed if o["order_id"] == ref)
    url = f"/api/v1/orders/{order_id}/disqualify"
    for _ in range(2):  # the second changes nothing: no entry
        done = await client.post(url, json={"reason": "fraud"}, headers=bearer(account.admin_key))
        assert done.status_code == 200, done.text
    [disqualified] = await entries(pool, "order", order_id)
    assert disqualified["action"] == "order.disqualify"
    assert disqualified["publisher_id"] == account.publisher_id
    assert disqualified["before"]["attribution"] == "attributed"
    assert disqualified["after"]["attribution"] == "disqualified"
    assert disqualified["after"]["disqualified_reason"] == "fraud"
    assert (
        await client.post(
            "/api/v1/orders/999999999/disqualify",
            json={"reason": "x"},
            headers=bearer(account.admin_key),
        )
    ).status_code == 404
    assert await actions(pool, "order", 999999999) == []
    run = await client.post("/api/v1/orders/reattribute", headers=bearer(account.admin_key))
    assert run.status_code == 200
    assert (await entries(pool, "order", "waiting"))[-1]["after"] == run.json()

    # The publisher reads its own entries, whoever made them, and nobody else's.
    seen = (await account.get(AUDIT, limit="500"))["items"]
    assert {e["publisher_id"] for e in seen} == {account.publisher_id}
    assert {"withdrawal.request", "withdrawal.reject", "period.close", "order.disqualify"} <= {
        e["action"] for e in seen
    }
    assert all(e["at"].endswith("Z") for e in seen)
    await assert_no_secret(pool, account.key, account.admin_key, account.secret)


async def test_cli_close_period_is_audited(database_url: str, pool: Pool) -> None:
    publisher_id = await pool.fetchval(
        "INSERT INTO publishers (name) VALUES ('Closed by cli') RETURNING id"
    )
    cli(database_url, "close-period", "2018-01", "--publisher-id", str(publisher_id))
    cli(database_url, "close-period", "2018-01", "--publisher-id", str(publisher_id))
    found = [
        e for e in await entries(pool, "period", "2018-01") if e["publisher_id"] == publisher_id
    ]
    assert [(e["action"], e["actor_role"]) for e in found] == [("period.close", "operator")]


# -- reading it ----------------------------------------------------------------------------------


async def test_listing_filters_paging_and_scope(
    app_client: httpx.AsyncClient, admin_key: str, database_url: str
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    name = f"Paged shop {uuid.uuid4().hex[:8]}"
    created = await app_client.post(
        "/api/v1/merchants", json={"name": name}, headers=bearer(admin_key)
    )
    mid = created.json()["id"]
    for step in ("disable", "enable", "disable", "enable"):
        await app_client.post(f"/api/v1/merchants/{mid}/{step}", headers=bearer(admin_key))
    mine = {"target_kind": "merchant", "target_id": str(mid)}

    async def page(**params: Any) -> httpx.Response:
        return await app_client.get(AUDIT, params={**mine, **params}, headers=bearer(admin_key))

    everything = (await page()).json()
    assert [e["action"] for e in everything["items"]] == [
        "merchant.enable",
        "merchant.disable",
        "merchant.enable",
        "merchant.disable",
        "merchant.create",
    ]
    assert everything["next_before_id"] is None
    paged: list[int] = []
    cursor: int | None = None
    while True:
        got = (await page(limit=2, **({} if cursor is None else {"before_id": cursor}))).json()
        paged += [e["id"] for e in got["items"]]
        cursor = got["next_before_id"]
        if cursor is None:
            break
    assert paged == [e["id"] for e in everything["items"]]
    assert len((await page(action="merchant.disable")).json()["items"]) == 2
    assert len((await page(since=started.isoformat())).json()["items"]) == 5
    assert (await page(until=started.isoformat())).json()["items"] == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await page(since=later)).json()["items"] == []
    for bad in ({"limit": 501}, {"limit": 0}, {"since": "2020-01-01T00:00:00"}, {"before_id": 0}):
        assert (await page(**bad)).status_code == 422, bad
    assert (await page(since=later, until=started.isoformat())).status_code == 422

    # A publisher key: its own entries only; another's publisher_id is unknown to it.
    publisher_id = await new_publisher(app_client, admin_key, "Reader")
    other_id = await new_publisher(app_client, admin_key, "Someone else")
    key = await new_publisher_key(app_client, admin_key, publisher_id)
    own = await app_client.get(AUDIT, params={"limit": 500}, headers=bearer(key))
    assert own.status_code == 200
    assert {e["publisher_id"] for e in own.json()["items"]} == {publisher_id}
    assert (
        await app_client.get(AUDIT, params={"publisher_id": other_id}, headers=bearer(key))
    ).status_code == 404
    assert (await app_client.get(AUDIT, params=mine, headers=bearer(key))).json()["items"] == []
    admin_view = await app_client.get(
        AUDIT, params={"publisher_id": other_id}, headers=bearer(admin_key)
    )
    assert [e["action"] for e in admin_view.json()["items"]] == ["publisher.create"]

    out = cli(database_url, "list-audit", "--target-kind", "merchant", "--target-id", str(mid))
    assert "merchant.disable merchant" in out and "disabled_at: null -> " in out
    assert "5 entries" in out
    refused = run_cli(database_url, "list-audit", "--limit", "501")
    assert refused.returncode != 0 and "must be 1 to 500" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("kind", ["merchant", "api_key"])
async def test_publisher_keys_cannot_read_admin_targets(
    app_client: httpx.AsyncClient, admin_key: str, kind: str
) -> None:
    publisher_id = await new_publisher(app_client, admin_key, "Nosy")
    key = await new_publisher_key(app_client, admin_key, publisher_id)
    seen = await app_client.get(AUDIT, params={"target_kind": kind}, headers=bearer(key))
    assert {e["publisher_id"] for e in seen.json()["items"]} <= {publisher_id}
