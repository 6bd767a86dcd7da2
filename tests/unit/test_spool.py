"""The spool file format and its ownership rules (real files, real locks)."""

from __future__ import annotations

from pathlib import Path

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
