"""The spool file format and its ownership rules (real files, real locks)."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tracemalloc
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from app.clicks import spool
from app.clicks.spool import Spool


async def collect(spool: Spool) -> list[bytes]:
    got: list[bytes] = []

    async def sink(chunk: list[bytes]) -> None:
        got.extend(chunk)

    await spool.replay(sink)
    return got


async def test_a_live_writer_keeps_its_file_until_it_rotates(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append([b"a", b"b"])
    other = Spool(tmp_path)
    assert await collect(other) == []  # locked by its writer
    assert writer.has_data()
    writer.rotate()
    assert await collect(other) == [b"a", b"b"]
    assert not any(tmp_path.glob("*"))  # noqa: ASYNC240 - a test on a tiny folder
    assert not writer.has_data()


async def test_a_torn_last_line_was_never_acknowledged(tmp_path: Path) -> None:
    (tmp_path / "spool-1-1-1.log").write_bytes(b'{"x":1}\n{"x":2}\n{"x"')
    assert await collect(Spool(tmp_path)) == [b'{"x":1}', b'{"x":2}']


async def test_a_failing_sink_keeps_the_file(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append([b"1"])
    writer.rotate()

    async def broken(_chunk: list[bytes]) -> None:
        raise OSError("redis gone")

    try:
        await writer.replay(broken)
    except OSError:
        pass
    assert await collect(writer) == [b"1"]


async def test_many_files_and_chunks(tmp_path: Path) -> None:
    expected = []
    for n in range(3):
        writer = Spool(tmp_path)
        batch = [f"{n}-{i}".encode() for i in range(2500)]
        writer.append(batch)
        writer.close()
        expected += batch
    assert sorted(await collect(Spool(tmp_path))) == sorted(expected)


# --- Bounded files, bounded replay (issue 15) -------------------------------------------


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("spool-*.log"))


async def test_a_file_rotates_at_its_size_bound(tmp_path: Path) -> None:
    writer = Spool(tmp_path, max_file_bytes=10_000)
    line = b"x" * 99  # 100 bytes with its newline
    for _ in range(25):
        writer.append([line] * 10)  # 1,000 bytes a batch
    sizes = [path.stat().st_size for path in spool_files(tmp_path)]
    assert sizes == [10_000, 10_000, 5_000]
    assert all(size <= writer.max_file_bytes for size in sizes)
    # The full files are closed (unlocked): another process may replay them now, while the
    # writer goes on with its third.
    assert len(await collect(Spool(tmp_path))) == 200
    writer.close()
    assert len(await collect(Spool(tmp_path))) == 50


async def test_a_batch_larger_than_the_bound_goes_whole_into_a_file(tmp_path: Path) -> None:
    writer = Spool(tmp_path, max_file_bytes=4096)
    writer.append([b"small"])
    writer.append([b"y" * 1000] * 10)  # one batch is never split between files
    writer.close()
    assert [path.stat().st_size for path in spool_files(tmp_path)] == [6, 10_010]


async def test_a_failed_append_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clicks of a refused batch (their redirects got 503) are never replayed."""
    writer = Spool(tmp_path, fsync=True)
    writer.append([b"kept"])

    def no_disk(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", no_disk)
        with pytest.raises(OSError, match="No space"):
            writer.append([b"refused-1", b"refused-2"])
    writer.append([b"after"])
    writer.close()
    assert await collect(Spool(tmp_path)) == [b"kept", b"after"]


async def test_a_file_another_process_holds_is_skipped(tmp_path: Path) -> None:
    """A live writer of another process (or another process replaying the file) holds its
    lock: the file is left alone, then replayed once the lock is gone."""
    path = tmp_path / "spool-99-1-1.log"
    path.write_bytes(b"theirs\n")
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(path), stdin=PIPE, stdout=PIPE
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        mine = Spool(tmp_path)
        assert await collect(mine) == []
        assert path.exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # it ends, and its lock with it
        async with asyncio.timeout(10):
            await holder.wait()
    assert await collect(mine) == [b"theirs"]
    assert not path.exists()


HOLD_LOCK = """
import fcntl, sys
f = open(sys.argv[1], "rb")
fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()
"""


async def test_an_overlong_line_is_skipped_not_held(tmp_path: Path) -> None:
    giant = b"z" * (spool.MAX_LINE_BYTES * 3 + 17)
    (tmp_path / "spool-1-1-1.log").write_bytes(b"before\n" + giant + b"\nafter\n\n")
    assert await collect(Spool(tmp_path)) == [b"before", b"after"]


async def test_chunks_are_bounded_in_lines_and_bytes(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append([b"s" * 10] * 2500 + [b"L" * 4000] * 600)
    writer.close()
    chunks: list[list[bytes]] = []

    async def sink(chunk: list[bytes]) -> None:
        chunks.append(chunk)

    assert await Spool(tmp_path).replay(sink) == 3100
    assert max(len(chunk) for chunk in chunks) == spool.REPLAY_CHUNK
    limit = spool.REPLAY_CHUNK_BYTES + spool.MAX_LINE_BYTES
    assert max(sum(len(line) + 1 for line in chunk) for chunk in chunks) <= limit
    assert [line for chunk in chunks for line in chunk] == [b"s" * 10] * 2500 + [b"L" * 4000] * 600


SPOOL_MB = 48
# What a replay may allocate at its peak, whatever the file's size: a chunk of lines and the
# list holding them (reading the file whole took twice its size).
REPLAY_PEAK_BYTES = 6 * 1024 * 1024


async def test_replaying_a_large_spool_keeps_memory_bounded(tmp_path: Path) -> None:
    line = b"0 " + b'{"v":1,"id":"%036d","pad":"' + b"p" * 380 + b'"}'
    lines_per_mb = 1024 * 1024 // (len(line) + 1)
    with (tmp_path / "spool-7-1-1.log").open("wb") as file:
        for n in range(SPOOL_MB):
            file.write(b"".join(line % (n * lines_per_mb + i) + b"\n" for i in range(lines_per_mb)))
    count = 0

    async def sink(chunk: list[bytes]) -> None:
        nonlocal count
        count += len(chunk)

    tracemalloc.start()
    try:
        assert await Spool(tmp_path).replay(sink) == SPOOL_MB * lines_per_mb
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == SPOOL_MB * lines_per_mb
    assert peak < REPLAY_PEAK_BYTES, f"peak {peak / 2**20:.1f} MiB for a {SPOOL_MB} MiB spool"


async def test_a_replay_lets_other_work_run_between_chunks(tmp_path: Path) -> None:
    """The replay runs in the web worker's event loop: redirects must not wait for a file."""
    writer = Spool(tmp_path)
    writer.append([b"c" * 50] * 20 * spool.REPLAY_CHUNK)
    writer.close()
    ticks = 0
    ticks_per_chunk: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def sink(_chunk: list[bytes]) -> None:  # awaits nothing: the replay must yield
        ticks_per_chunk.append(ticks)

    task = asyncio.create_task(ticker())
    try:
        await Spool(tmp_path).replay(sink)
    finally:
        task.cancel()
    assert len(ticks_per_chunk) == 20
    assert all(b > a for a, b in itertools.pairwise(ticks_per_chunk))
