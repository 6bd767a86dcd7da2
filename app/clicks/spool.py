"""The local append-only spool: where clicks go when Redis cannot take them in time.

Files of newline-delimited click payloads (a payload never contains a newline). A writer
appends to one file at a time, and holds an exclusive ``flock`` on it; past
``max_file_bytes`` it closes it and starts another, so that no file grows without bound
however long Redis stays away. A file nobody holds a lock on belongs to a writer that
rotated it or died, and any process may replay it into Redis and delete it. A file is
created under a name the replay does not look at, locked, then renamed into place: the
replay never finds a file before its writer holds it.

The replay streams a file: a chunk of lines at a time (at most ``REPLAY_CHUNK`` lines and
about ``REPLAY_CHUNK_BYTES`` bytes), so its memory does not depend on how much an outage
spooled. The file is deleted once its last chunk is in; a crash or a failure mid-replay
replays it again from its start: duplicates in the stream are harmless, the flusher is
idempotent on click id. A last line without its newline was never acknowledged to anyone
(the write did not complete) and is dropped.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
REPLAY_CHUNK = 1000  # lines handed to the sink at once
REPLAY_CHUNK_BYTES = 1024 * 1024  # a chunk stops at the first line past this many bytes
# No click payload comes near this (the redirect bounds every field it records): a longer
# line is not one, and is skipped without being held in memory.
MAX_LINE_BYTES = 64 * 1024


class Spool:
    """One writer's spool in ``directory``; replays every writer's files found there.

    ``fsync``: each append is on disk, not only in the OS, before it returns.
    ``max_file_bytes``: a file takes no more appends past this size (bytes); one larger
    batch still goes whole into a file of its own.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = False,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self._file: BinaryIO | None = None
        self._size = 0  # bytes in the current file
        self._sequence = 0

    def append(self, payloads: list[bytes]) -> None:
        """Write payloads, all or none: on return they are in the OS (on disk with
        ``fsync``). Raises OSError (disk full, ...) after taking back what it wrote."""
        data = b"".join(p + b"\n" for p in payloads)
        if self._size and self._size + len(data) > self.max_file_bytes:  # a file is open
            self.rotate()
        file = self._file or self._open()
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may take part of it (a full disk, say)
                written = file.write(view)
                if not written:
                    raise OSError("spool write made no progress")
                view = view[written:]
            if self.fsync:
                os.fsync(file.fileno())
        except BaseException:
            self._take_back(file)
            raise
        self._size += len(data)

    def _take_back(self, file: BinaryIO) -> None:
        """After a failed append: cut the file back to its last complete append, so that no
        refused click is replayed. If even that fails, the file is closed: what is torn is
        then its last line, which the replay drops."""
        try:
            os.ftruncate(file.fileno(), self._size)
        except OSError:
            self.rotate()

    def _open(self) -> BinaryIO:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        name = f"spool-{os.getpid()}-{time.time_ns()}-{self._sequence}.log"
        opening = self.directory / f".{name}.new"
        # Unbuffered: a write is in the OS when it returns, and a failed one leaves nothing
        # in a buffer that closing the file would write later.
        file = open(opening, "ab", buffering=0)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            opening.rename(self.directory / name)  # the lock stays: it is the inode's
        except BaseException:
            file.close()
            opening.unlink(missing_ok=True)
            raise
        self._file, self._size = file, 0
        return file

    def rotate(self) -> None:
        """Close the current file so that it can be replayed; the next append opens another."""
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file, self._size = None, 0

    def has_data(self) -> bool:
        if self._file is not None and self._size > 0:
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
        """Hand every unlocked spool file to ``sink``, a chunk of payloads at a time, deleting
        each file once it is fully taken; the number of payloads handed over. Between chunks
        the event loop runs other work. Raises what ``sink`` raises (the file stays for the
        next attempt)."""
        replayed = 0
        for path in list(self._unowned_files()):
            file = await asyncio.to_thread(_claim, path)
            if file is None:
                continue
            with file:  # the lock is held until every chunk is in
                while (chunk := await asyncio.to_thread(_read_chunk, file, path)) is not None:
                    if chunk:
                        await sink(chunk)
                        replayed += len(chunk)
                    await asyncio.sleep(0)  # the redirects go first
                path.unlink()
        return replayed

    def close(self) -> None:
        self.rotate()


def _claim(path: Path) -> BinaryIO | None:
    """Open and lock a spool file nobody holds; None when someone does, or it is gone."""
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
    return file


def _read_chunk(file: BinaryIO, path: Path) -> list[bytes] | None:
    """The next complete, non-empty lines of ``file`` (without their newlines), at most
    ``REPLAY_CHUNK`` of them and about ``REPLAY_CHUNK_BYTES``; None at the end of the file.
    The part after the last newline was never acknowledged (its write did not complete)
    and is left out; so is a line longer than ``MAX_LINE_BYTES`` (not a click)."""
    lines: list[bytes] = []
    size = 0
    while len(lines) < REPLAY_CHUNK and size < REPLAY_CHUNK_BYTES:
        line = file.readline(MAX_LINE_BYTES)
        if line.endswith(b"\n"):
            if len(line) > 1:
                lines.append(line[:-1])
                size += len(line)
            continue
        if len(line) < MAX_LINE_BYTES:  # the end of the file, after a torn line or none
            return lines or None
        _skip_line(file, path)
    return lines


def _skip_line(file: BinaryIO, path: Path) -> None:
    """Read past the rest of an overlong line, a bounded piece at a time."""
    skipped = MAX_LINE_BYTES
    while (piece := file.readline(MAX_LINE_BYTES)) and not piece.endswith(b"\n"):
        skipped += len(piece)
    log.error(
        "spool line too long to be a click, dropped",
        extra={"file": path.name, "bytes": skipped + len(piece)},
    )
