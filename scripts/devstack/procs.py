"""Processes we did not fork ourselves (a postmaster's backends, a leftover postmaster), known
by PID and start time so that a reused PID is never signalled."""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _ProcStat:
    state: str
    ppid: int
    start_time: str


def _proc_stat(pid: int) -> _ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ..., starttime
    return _ProcStat(state=fields[0], ppid=int(fields[1]), start_time=fields[19])


@dataclass(frozen=True)
class Proc:
    """A process known by PID and start time, so that a reused PID is never signalled."""

    pid: int
    start_time: str

    @classmethod
    def find(cls, pid: int) -> Proc | None:
        """The process with this PID now, or None if there is none."""
        info = _proc_stat(pid)
        return None if info is None else cls(pid, info.start_time)

    def alive(self) -> bool:
        """Whether this very process still runs (not a zombie, not a reused PID)."""
        info = _proc_stat(self.pid)
        return info is not None and info.start_time == self.start_time and info.state not in "ZX"

    def signal(self, signum: int) -> None:
        """Send signum, if this very process is still alive."""
        if self.alive():
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def children(self) -> list[Proc]:
        """The processes whose parent this one is."""
        found = []
        for entry in Path("/proc").iterdir():
            info = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
            if info is not None and info.ppid == self.pid:
                found.append(Proc(int(entry.name), info.start_time))
        return found
