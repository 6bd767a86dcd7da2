"""Plan management (API and CLI) and the merchant commands, on real Postgres.

Plans are global in the test database: tests here use dates after 2090, each its own, so
that no plan of theirs is in force for the orders of other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from app.accounts.merchants import sign, verify
from app.core.db import Pool
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file
from tests.support.orders import ensure_default_plan


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def plan_body(name: str = "Future plan", standard: str = "9") -> dict[str, Any]:
    return {
        "name": name,
        "minimum_rate": "8",
        "standard_rates": {"*": standard},
        "incentive_tiers": [{"min_sales": "0", "bonus": "0"}, {"min_sales": "1000", "bonus": 1}],
        "new_buyer_rates": {"*": "12"},
        "new_buyer_excluded": ["computer-office/tablets"],
    }


async def test_plan_lifecycle(app_client: httpx.AsyncClient, admin_key: str, pool: Pool) -> None:
    url = "/api/v1/plans/2091-04-10"
    created = await app_client.put(url, json=plan_body(), headers=bearer(admin_key))
    assert created.status_code == 201, created.text
    assert created.json()["outcome"] == "created"
    plan = created.json()["plan"]
    assert plan["effective_from"] == "2091-04-10"
    assert {"min_sales": "1000", "category": "*", "standard": "10", "new_buyer": "13"} in plan[
        "ladder"
    ]
    same = await app_client.put(url, json=plan_body(), headers=bearer(admin_key))
    assert same.status_code == 200 and same.json()["outcome"] == "unchanged"
    replaced = await app_client.put(url, json=plan_body(standard="10"), headers=bearer(admin_key))
    assert replaced.json()["outcome"] == "replaced"

    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('P') RETURNING id"
        )
    key = (
        await app_client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
        )
    ).json()["key"]
    listed = await app_client.get("/api/v1/plans", headers=bearer(key))  # publishers may read
    dates = [p["effective_from"] for p in listed.json()]
    assert "2016-09-10" in dates and "2091-04-10" in dates and dates == sorted(dates)
    got = await app_client.get(url, headers=bearer(key))
    assert got.json()["standard_rates"] == {"*": "10"}
    assert (await app_client.put(url, json=plan_body(), headers=bearer(key))).status_code == 403

    deleted = await app_client.delete(url, headers=bearer(admin_key))
    assert deleted.status_code == 204
    assert (await app_client.get(url, headers=bearer(admin_key))).status_code == 404
    assert (await app_client.delete(url, headers=bearer(admin_key))).status_code == 404


async def test_bad_plans_are_422(app_client: httpx.AsyncClient, admin_key: str) -> None:
    cases = [
        ("/api/v1/plans/2091-05-10", {**plan_body(), "minimum_rate": "9.5"}, "below the minimum"),
        ("/api/v1/plans/2091-05-01", plan_body(), "start of a period"),
        ("/api/v1/plans/2091-05-10", {**plan_body(), "effective_from": "2091-06-10"}, "differs"),
        ("/api/v1/plans/2091-05-10", {**plan_body(), "ladder": []}, "does not match"),
        ("/api/v1/plans/2091-05-10", {"name": "x"}, "standard_rates"),
        (
            "/api/v1/plans/2091-05-10",
            {**plan_body(standard="7"), "minimum_rate": "5"},
            "below the program's minimum of 8 %",
        ),
    ]
    for url, body, message in cases:
        response = await app_client.put(url, json=body, headers=bearer(admin_key))
        assert response.status_code == 422, response.text
        assert message in response.json()["message"]


async def test_plans_below_their_own_floors_are_422(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    url = "/api/v1/plans/2091-07-10"
    toys = {**plan_body(), "standard_rates": {"*": "9", "toys": "12.5"}}
    dolls = {**plan_body(), "new_buyer_rates": {"*": "12", "toys": "13"}}
    dolls["standard_rates"] = {"*": "9", "toys/dolls": "13.25"}
    ladder = [{"min_sales": "0", "category": "*", "standard": "9", "new_buyer": "12"}] * 2
    cases = [
        (plan_body(standard="7.99"), "standard_rates['*'] = 7.99 is below the minimum rate 8"),
        (
            {**plan_body(), "new_buyer_rates": {"*": "7"}},
            "new_buyer_rates['*'] = 7 is below the minimum rate 8",
        ),
        (
            plan_body(standard="12.01"),
            "new_buyer_rates['*'] = 12 is below the standard rate 12.01 (standard_rates['*'])",
        ),
        (toys, "new_buyer_rates['*'] = 12 is below the standard rate 12.5 "
               "(standard_rates['toys']) for 'toys'"),
        (dolls, "new_buyer_rates['toys'] = 13 is below the standard rate 13.25 "
                "(standard_rates['toys/dolls']) for 'toys/dolls'"),
        ({**plan_body(), "ladder": ladder}, "states the row of '*' from 0 more than once"),
        (
            {**plan_body(), "withdrawal_minimum": "10"},
            "withdrawal_minimum (10) is below withdrawal_fee (15)",
        ),
    ]  # fmt: skip
    for body, message in cases:
        response = await app_client.put(url, json=body, headers=bearer(admin_key))
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid"
        assert message in response.json()["message"], response.json()["message"]
        assert "Value error" not in response.json()["message"]
    assert (await app_client.get(url, headers=bearer(admin_key))).status_code == 404
    # On the floor is fine: a new buyer's rate equal to the standard rate.
    equal = await app_client.put(url, json=plan_body(standard="12"), headers=bearer(admin_key))
    assert equal.status_code == 201, equal.text
    assert (await app_client.delete(url, headers=bearer(admin_key))).status_code == 204
    assert (
        await app_client.get("/api/v1/plans/not-a-date", headers=bearer(admin_key))
    ).status_code == 422


async def test_a_plan_that_paid_commissions_is_frozen(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('F') RETURNING id"
        )
        await conn.execute(
            """INSERT INTO commission_plans (effective_from, name, body)
               SELECT '2092-01-10', name, jsonb_set(body, '{effective_from}', '"2092-01-10"')
               FROM commission_plans WHERE effective_from = '2016-09-10'"""
        )
        order_id = await conn.fetchval(
            """INSERT INTO merchants (name, secret) VALUES ('Frozen shop', repeat('s', 40))
               RETURNING id"""
        )
        order_id = await conn.fetchval(
            """INSERT INTO orders (merchant_id, order_ref, click_ref, ordered_at, amount,
                   category, new_buyer, status, status_at)
               VALUES ($1, 'F-1', 'x', now(), 1, 'toys', false, 'completed', now()) RETURNING id""",
            order_id,
        )
        await conn.execute(
            """INSERT INTO ledger (publisher_id, kind, amount, order_id, period_start, plan_from,
                   effective_at)
               VALUES ($1, 'credit', 0.08, $2, '2092-01-10', '2092-01-10', now())""",
            publisher_id,
            order_id,
        )
    url = "/api/v1/plans/2092-01-10"
    replaced = await app_client.put(url, json=plan_body(), headers=bearer(admin_key))
    assert replaced.status_code == 409 and "paid commissions" in replaced.json()["message"]
    assert (await app_client.delete(url, headers=bearer(admin_key))).status_code == 409
    default = await app_client.put(
        "/api/v1/plans/2016-09-10",
        json=json.loads(read_plan_file(DEFAULT_PLAN_FILE).model_dump_json()),
        headers=bearer(admin_key),
    )
    assert default.json()["outcome"] == "unchanged"  # the same plan again is fine


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLICKTRACK_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_merchants_plans_and_closes(database_url: str, tmp_path: Path) -> None:
    created = run_cli(database_url, "create-merchant", "CLI Shop")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("ctm_")
    verify(secret, "1", sign(secret, "1", b"{}"), b"{}", now=1, max_skew_s=1)
    again = run_cli(database_url, "create-merchant", "CLI Shop")
    assert again.returncode == 1 and "already exists" in again.stderr
    rotated = run_cli(database_url, "rotate-merchant-secret", "CLI Shop")
    assert rotated.returncode == 0 and rotated.stdout.strip().splitlines()[-1] != secret

    loaded = run_cli(database_url, "load-plan")  # the bundled default plan
    assert loaded.returncode == 0, loaded.stderr
    assert "2016-09-10" in loaded.stdout
    future = tmp_path / "future.toml"
    future.write_text(
        'name = "CLI future"\neffective_from = 2093-03-10\nminimum_rate = 8\n'
        '[standard_rates]\n"*" = 8\n[[incentive_tiers]]\nmin_sales = 0\nbonus = 0\n'
    )
    assert "created" in run_cli(database_url, "load-plan", str(future)).stdout
    future.write_text('name = "CLI future"\neffective_from = 2093-03-11\n')
    bad = run_cli(database_url, "load-plan", str(future))
    assert bad.returncode == 1 and "start of a period" in bad.stderr
    below = tmp_path / "below.toml"
    below.write_text(
        'name = "CLI below"\neffective_from = 2093-04-10\nminimum_rate = 8\n'
        '[standard_rates]\n"*" = 8\n"toys" = 11\n[new_buyer_rates]\n"*" = 10\n'
        "[[incentive_tiers]]\nmin_sales = 0\nbonus = 0\n"
    )
    refused = run_cli(database_url, "load-plan", str(below))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error: plan: new_buyer_rates['*'] = 10 is below")
    assert "standard rate 11 (standard_rates['toys']) for 'toys'" in refused.stderr
    assert "Traceback" not in refused.stderr
    below.write_text(below.read_text().replace('"toys" = 11', '"toys" = 7.5'))
    refused = run_cli(database_url, "load-plan", str(below))
    assert refused.returncode == 1
    assert "standard_rates['toys'] = 7.5 is below the minimum rate 8" in refused.stderr

    closed = run_cli(database_url, "close-period", "2015-01")
    assert closed.returncode == 0, closed.stderr
    assert "period 2015-01" in closed.stdout
    running = run_cli(database_url, "close-period", "2999-01")
    assert running.returncode == 1 and "runs until" in running.stderr
