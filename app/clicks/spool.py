"""The local append-only spool: where clicks go when Redis cannot take them in time.

One file per writer process, newline-delimited click payloads (a payload never contains a
newline). The writer holds an exclusive ``flock`` on its open file; a file nobody holds a
lock on belongs to a writer that rotated it or died, and any process may replay it into
Redis and delete it. A crash mid-replay replays the file again: duplicates in the stream are
harmless, the flusher is idempotent on click id. A last line without its newline was never
acknowledged to anyone (the write did not complete) and is dropped.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

REPLAY_CHUNK = 1000


class Spool:
    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._sequence = 0

    def append(self, payloads: list[bytes]) -> None:
        """Write payloads; on return they are in the OS (on disk too with ``fsync``)."""
        file = self._file or self._open()
        file.write(b"".join(p + b"\n" for p in payloads))
        file.flush()
        if self.fsync:
            os.fsync(file.fileno())

    def _open(self) -> BinaryIO:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        name = f"spool-{os.getpid()}-{time.time_ns()}-{self._sequence}.log"
        file = open(self.directory / name, "ab")
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file = file
        return file

    def rotate(self) -> None:
        """Close the current file so that it can be replayed; the next append opens another."""
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None

    def has_data(self) -> bool:
        if self._file is not None and self._file.tell() > 0:
            return True
        return any(self._unowned_files())

    def _unowned_files(self) -> Iterator[Path]:
        if not self.directory.is_dir():
            return
        own = Path(self._file.name).name if self._file is not None else None
        for path in sorted(self.directory.glob("spool-*.log")):
            if path.name != own:
                yield path

    async def replay(self, sink: Callable[[list[bytes]], Awaitable[None]]) -> int:
        """Hand every unlocked spool file to ``sink`` in chunks, deleting each file once it is
        fully taken. Raises what ``sink`` raises (the file stays for the next attempt)."""
        replayed = 0
        for path in list(self._unowned_files()):
            claimed = await asyncio.to_thread(_claim, path)
            if claimed is None:
                continue
            file, payloads = claimed
            with file:  # the lock is held until every chunk is in
                for start in range(0, len(payloads), REPLAY_CHUNK):
                    await sink(payloads[start : start + REPLAY_CHUNK])
                path.unlink()
            replayed += len(payloads)
        return replayed

    def close(self) -> None:
        self.rotate()


def _claim(path: Path) -> tuple[BinaryIO, list[bytes]] | None:
    """Open and lock a spool file nobody holds, and read its complete lines."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return None  # another process replayed it meanwhile
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()  # its writer is alive, or another process is replaying it
        return None
    if not path.exists():  # replayed and deleted between our open and our lock
        file.close()
        return None
    # The part after the last newline was never acknowledged (its write did not complete).
    payloads = [line for line in file.read().split(b"\n")[:-1] if line]
    return file, payloads
