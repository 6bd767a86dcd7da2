"""Migrations: in order, once, under a lock that makes concurrent runs safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from app.core.migrate import MigrationError, load_migrations, migrate
from tests.conftest import create_database, drop_database


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    name = f"clicktrack_mig_{uuid.uuid4().hex[:12]}"
    url = await create_database(name)
    try:
        yield url
    finally:
        await drop_database(name)


async def test_twice_in_a_row_is_a_no_op(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        first = await migrate(conn)
        assert first == [m.name for m in load_migrations()]
        assert await migrate(conn) == []
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in load_migrations()]
    finally:
        await conn.close()


async def test_concurrent_runs_do_not_fail(empty_database: str) -> None:
    conns = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    applied = [r for r in results if r]
    assert len(applied) == 1, results  # exactly one runner did the work
    assert applied[0] == [m.name for m in load_migrations()]


async def test_a_failing_migration_leaves_nothing_half_applied(
    empty_database: str, tmp_path: Path
) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE b (x int); SELECT nonsense;")
    conn = await asyncpg.connect(empty_database)
    try:
        with pytest.raises(MigrationError, match=r"002_bad\.sql"):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('a') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('b') IS NULL")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


def test_badly_named_or_duplicate_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="used twice"):
        load_migrations(tmp_path)
    (tmp_path / "001_b.sql").unlink()
    (tmp_path / "two.sql").write_text("")
    with pytest.raises(MigrationError, match="NNN_"):
        load_migrations(tmp_path)
