"""Create the load test's data through the API and write it where the locustfile reads it.

    python -m loadtests.setup_data --host http://127.0.0.1:8000 --admin-key KEY [--links 2000]

Makes one publisher, an API key of its own, and ``--links`` links (created as that publisher,
several requests at a time), then writes ``{"codes": [...], "api_key": "..."}`` to ``--out``
(default test-artifacts/loadtest-data.json). The admin key comes from
``python -m app.cli create-admin-key`` (or ``LOADTEST_ADMIN_KEY``). Standard library only, so
that it runs wherever locust does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_OUT = "test-artifacts/loadtest-data.json"


class SetupError(Exception):
    pass


class Api:
    """A tiny JSON client: one keep-alive connection per thread."""

    def __init__(self, base_url: str, key: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SetupError(f"not an http(s) URL: {base_url}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._key = key
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=30)
            self._local.conn = conn
        return conn

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn = self._connection()
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        try:
            conn.request("POST", path, body=json.dumps(body), headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._local.conn = None
            conn.close()
            raise SetupError(f"POST {path}: {exc}") from exc
        if response.status != 201:
            raise SetupError(f"POST {path}: {response.status} {payload[:300]!r}")
        found: dict[str, Any] = json.loads(payload)
        return found


def create_data(host: str, admin_key: str, links: int, concurrency: int = 8) -> dict[str, Any]:
    admin = Api(host, admin_key)
    publisher = admin.post("/api/v1/publishers", {"name": f"loadtest {uuid.uuid4().hex[:8]}"})
    key = admin.post(f"/api/v1/publishers/{publisher['id']}/api-keys", {"name": "loadtest"})
    api = Api(host, key["key"])

    def create(n: int) -> str:
        link = api.post("/api/v1/links", {"destination": f"https://shop.example.com/item/{n}"})
        return str(link["code"])

    with ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(create, range(1, links + 1)))
    return {"codes": codes, "api_key": key["key"], "publisher_id": publisher["id"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.setup_data", description=__doc__)
    parser.add_argument("--host", required=True, help="base URL of the app")
    parser.add_argument("--admin-key", default=os.environ.get("LOADTEST_ADMIN_KEY"))
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--out", default=DEFAULT_OUT)
    options = parser.parse_args(argv)
    if not options.admin_key:
        parser.error("an admin key is needed: --admin-key or LOADTEST_ADMIN_KEY")
    try:
        data = create_data(options.host, options.admin_key, options.links)
    except SetupError as exc:
        print(f"setup_data: {exc}", file=sys.stderr)
        return 1
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data) + "\n")
    print(f"setup_data: {len(data['codes'])} links of publisher {data['publisher_id']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
