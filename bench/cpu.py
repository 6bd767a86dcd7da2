"""Is the machine quiet enough to measure? Read from /proc, before and during each run.

Two checks:

- *before*: over one second, every core must be at least ``min_idle`` idle. Our own servers
  are idle then, so anything busy is someone else's. (The load average is not used: it
  decays over minutes and still counts our own previous run.)
- *during*: CPU time spent on the machine (user, nice and system time from /proc/stat)
  minus the CPU time of our own processes (the servers and their children, Redis, Postgres,
  wrk, this script) must stay under ``max_foreign`` cores. Interrupt and softirq time is left
  out of both sides: on loopback it is mostly our own traffic. Steal time (a hypervisor
  running someone else on our cores) counts as foreign.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CoreTimes:
    busy: int  # user + nice + system, in ticks
    irq: int  # irq + softirq
    idle: int  # idle + iowait
    steal: int
    total: int


def read_cores() -> dict[str, CoreTimes]:
    """``cpu`` (all cores) and ``cpu0``, ``cpu1``, ... from /proc/stat."""
    cores = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            continue
        name, *raw = line.split()
        values = [int(v) for v in raw[:8]] + [0] * (8 - len(raw[:8]))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        cores[name] = CoreTimes(
            busy=user + nice + system,
            irq=irq + softirq,
            idle=idle + iowait,
            steal=steal,
            total=sum(values),
        )
    return cores


def idle_fractions(interval: float = 1.0) -> dict[str, float]:
    """Per core (``cpu0``...), the idle share of the next ``interval`` seconds."""
    before = read_cores()
    time.sleep(interval)
    after = read_cores()
    fractions = {}
    for name, end in after.items():
        start = before.get(name)
        if name == "cpu" or start is None:
            continue
        total = end.total - start.total
        fractions[name] = (end.idle - start.idle) / total if total > 0 else 1.0
    return fractions


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(roots: Iterable[int]) -> list[int]:
    """The processes ``roots`` and all their descendants (those still running)."""
    children = _children_map()
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += children.get(pid, [])
    return found


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds of the processes ``roots`` and all their descendants,
    including descendants that have exited since: a parent that reaped a child holds its
    time (Postgres's autovacuum workers and closed backends come and go under the
    postmaster, and would otherwise count as someone else's CPU)."""
    ticks = 0
    for pid in descendants(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # utime, stime, and cutime, cstime: the reaped children's
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _own_seconds() -> float:
    """CPU seconds of this process and of its children already reaped (wrk, when done)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


@dataclass(frozen=True)
class CpuReport:
    seconds: float
    busy_cores: float  # average cores busy on the machine
    ours_cores: float  # of which our processes
    irq_cores: float  # interrupts, mostly our own loopback traffic (not in busy_cores)
    steal_cores: float

    @property
    def foreign_cores(self) -> float:
        return max(0.0, self.busy_cores - self.ours_cores) + self.steal_cores

    def as_dict(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "busy_cores": round(self.busy_cores, 3),
            "ours_cores": round(self.ours_cores, 3),
            "irq_cores": round(self.irq_cores, 3),
            "steal_cores": round(self.steal_cores, 3),
            "foreign_cores": round(self.foreign_cores, 3),
        }


class CpuMeter:
    """Measures foreign CPU use between ``start()`` and ``stop()``. ``roots`` gives the PIDs of
    our long-running processes (their descendants are included). Call ``stop()`` after wrk was
    reaped, so that its CPU time is in this process's children's usage."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        self._roots = roots
        self._start: tuple[float, CoreTimes, float] | None = None

    def _sample(self) -> tuple[float, CoreTimes, float]:
        ours = tree_cpu_seconds(self._roots()) + _own_seconds()
        return time.monotonic(), read_cores()["cpu"], ours

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> CpuReport:
        assert self._start is not None, "start() first"
        (t0, cpu0, ours0), (t1, cpu1, ours1) = self._start, self._sample()
        seconds = max(t1 - t0, 1e-6)
        return CpuReport(
            seconds=seconds,
            busy_cores=(cpu1.busy - cpu0.busy) / TICKS / seconds,
            ours_cores=(ours1 - ours0) / seconds,
            irq_cores=(cpu1.irq - cpu0.irq) / TICKS / seconds,
            steal_cores=(cpu1.steal - cpu0.steal) / TICKS / seconds,
        )
