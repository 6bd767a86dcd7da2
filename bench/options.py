"""The benchmark's command line (``python -m bench.run --help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

PHASES = ("redirect", "rules", "caps", "workers", "drain", "lag", "replicas", "cluster")
# Run by default: all but "replicas" (replica acknowledgement's cost) and "cluster" (Redis
# Cluster against one Redis), asked for by name.
DEFAULT_PHASES = PHASES[:-2]


def parse_cpus(text: str) -> set[int]:
    """A taskset-style CPU list ("1", "0,2", "2-3") as a set."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


@dataclass(frozen=True)
class Options:
    quick: bool
    force: bool
    soak: bool
    phases: tuple[str, ...]
    runs: int
    duration_s: float
    warmup_s: float
    connections: int
    links: int
    drain_clicks: int
    lag_s: float
    soak_s: float
    server_cpu: str
    wrk_cpu: str
    min_idle: float
    max_foreign: float
    max_foreign_drain: float
    quiet_wait_s: float
    retries: int
    keep: bool
    fail_on_target: bool
    # The flusher's CLICKTRACK_DIMENSIONS: off measures the drain without them (issue 19).
    dimensions: bool = True

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> Options:
        parser = argparse.ArgumentParser(
            prog="python -m bench.run",
            description="The clicktrack benchmark (docs/performance.md).",
        )
        add = parser.add_argument
        add("--quick", action="store_true", help="shorter runs, 100,000 clicks to drain")
        add("--force", action="store_true", help="report even when disturbed (marked so)")
        add("--soak", action="store_true", help="also the 10-minute soak at 80%% of peak")
        add(
            "--phases",
            default=",".join(DEFAULT_PHASES),
            help="comma list of: " + ", ".join(PHASES) + " (default: all but replicas, cluster)",
        )
        add("--runs", type=int, default=3, help="measured runs per server (median)")
        add("--duration", type=float, help="seconds per wrk run (10; quick: 5)")
        add("--connections", type=int, default=64)
        add("--links", type=int, default=1000)
        add("--drain-clicks", type=int, help="clicks to drain (1,000,000; quick: 100,000)")
        add("--lag-seconds", type=float, help="paced run for the lag (20; quick: 10)")
        add("--soak-seconds", type=float, default=600.0)
        add("--server-cpu", default="0", help="CPU list for the measured server")
        add("--wrk-cpu", default="1", help="CPU list for wrk")
        add("--min-idle", type=float, default=0.90, help="idle share each core needs before")
        add("--max-foreign", type=float, default=0.10, help="cores others may use during")
        add(
            "--max-foreign-drain",
            type=float,
            default=0.25,
            help="the same for the drain (the kernel writing Postgres's WAL and Redis's AOF)",
        )
        add("--quiet-wait", type=float, help="seconds to wait for a quiet CPU (90; --force: 5)")
        add("--retries", type=int, help="re-runs of a run disturbed midway (2; --force: 0)")
        add("--keep", action="store_true", help="keep the Redis and Postgres data")
        add("--fail-on-target", action="store_true", help="exit 1 if a target is missed")
        add(
            "--dimensions",
            choices=["on", "off"],
            default="on",
            help="the flusher's traffic dimensions (CLICKTRACK_DIMENSIONS; off: to compare)",
        )
        ns = parser.parse_args(argv)
        phases = tuple(p.strip() for p in ns.phases.split(",") if p.strip())
        unknown = set(phases) - set(PHASES)
        if unknown:
            parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
        if ns.runs < 1:
            parser.error("--runs must be at least 1")
        quick = bool(ns.quick)
        return cls(
            quick=quick,
            force=ns.force,
            soak=ns.soak,
            phases=phases,
            runs=ns.runs,
            duration_s=ns.duration or (5.0 if quick else 10.0),
            warmup_s=2.0 if quick else 3.0,
            connections=ns.connections,
            links=ns.links,
            drain_clicks=ns.drain_clicks or (100_000 if quick else 1_000_000),
            lag_s=ns.lag_seconds or (10.0 if quick else 20.0),
            soak_s=ns.soak_seconds,
            server_cpu=ns.server_cpu,
            wrk_cpu=ns.wrk_cpu,
            min_idle=ns.min_idle,
            max_foreign=ns.max_foreign,
            max_foreign_drain=ns.max_foreign_drain,
            quiet_wait_s=ns.quiet_wait
            if ns.quiet_wait is not None
            else (5.0 if ns.force else 90.0),
            retries=ns.retries if ns.retries is not None else (0 if ns.force else 2),
            keep=ns.keep,
            fail_on_target=ns.fail_on_target,
            dimensions=ns.dimensions == "on",
        )
