"""The benchmark's output: one table for the redirect, the worker scaling, the flusher
figures, the targets met or missed, and whether the machine was quiet. Also as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MB = 1024 * 1024

# From issue 5; docs/performance.md explains each.
TARGET_X_FASTAPI = 3.0
TARGET_X_ASGI = 0.60
TARGET_P99_MS = 5.0
TARGET_WORKERS_X = 1.7
# Issue 19: links with three country and device rules against the same links without.
TARGET_RULES_X = 0.9
# Click caps: links with two caps against the same links without. A capped click waits for one
# more batched round trip (its caps' script) before its group commit, and Redis does more per
# click: 0.78x measured on the two-core machine (docs/performance.md, "Phase 1c").
TARGET_CAPS_X = 0.7
TARGET_DRAIN_PER_S = 50_000
TARGET_LAG_P99_S = 1.0
MIN_SHARE_OF_PEAK = 0.76  # the pacing aims at 0.80 and gets within a few percent
TARGET_RSS_GROWTH = 0.10
MEMORY_SLACK_BYTES = 2 * MB  # "back to baseline": within allocator noise
MAX_NOTES = 8


def _num(value: float) -> str:
    return f"{value:,.0f}"


def capacity_lines(summary: Mapping[str, Any]) -> list[str]:
    """The figures docs/operations.md's capacity formulas take, from this run."""
    found = []
    single = summary.get("single", {}).get("clicktrack")
    if single:
        found.append(f"  redirects per second per worker (one core): {_num(single['rps'])}")
    if summary.get("clicks_per_batch"):
        found.append(
            f"  clicks per group-commit batch at that rate: {summary['clicks_per_batch']:.1f}"
        )
    drain = summary.get("drain")
    if drain:
        entry = (drain["redis_filled_bytes"] - drain["redis_baseline_bytes"]) / drain["clicks"]
        found += [
            f"  Redis memory per stream entry: {entry:,.0f} bytes",
            f"  rows per second per flusher: {_num(drain['clicks_per_s'])}",
        ]
        if drain.get("postgres_bytes_per_row"):
            found.append(
                f"  Postgres bytes per click row, indexes included: "
                f"{drain['postgres_bytes_per_row']:,.0f}"
            )
        if drain.get("payload_bytes_per_click"):
            # A spool line is "<shard> <payload>\n".
            found.append(f"  spool bytes per click: {drain['payload_bytes_per_click'] + 3:,.0f}")
    return ["", "capacity (docs/operations.md):", *found] if found else []


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def redirect_table(summary: Mapping[str, Any]) -> list[str]:
    rows = summary["single"]
    fastapi = rows.get("fastapi", {}).get("rps") or 0.0
    asgi = rows.get("asgi", {}).get("rps") or 0.0
    lines = [
        f"{'':38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>7}"
        f"{'x FastAPI':>11}{'x raw ASGI':>12}",
    ]
    for row in rows.values():
        x_fastapi = f"{row['rps'] / fastapi:.2f}" if fastapi else "-"
        x_asgi = f"{row['rps'] / asgi:.2f}" if asgi else "-"
        lines.append(
            f"{row['label']:38}{_num(row['rps']):>9}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['server_cores']:>7.2f}{x_fastapi:>11}{x_asgi:>12}"
        )
    return lines


def workers_table(summary: Mapping[str, Any]) -> list[str]:
    rows = summary.get("workers") or {}
    if not rows:
        return []
    one = rows.get("one", {}).get("rps") or 0.0
    lines = [
        f"{'':38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>7}{'x 1 worker':>12}"
    ]
    for row in rows.values():
        ratio = f"{row['rps'] / one:.2f}" if one else "-"
        lines.append(
            f"{row['label']:38}{_num(row['rps']):>9}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['server_cores']:>7.2f}{ratio:>12}"
        )
    return lines


def rules_lines(summary: Mapping[str, Any]) -> list[str]:
    return copies_lines(summary, "rules", "links without rules and with three")


def caps_lines(summary: Mapping[str, Any]) -> list[str]:
    return copies_lines(summary, "caps", "links without click caps and with two")


def copies_lines(summary: Mapping[str, Any], phase: str, what: str) -> list[str]:
    found = summary.get(phase)
    if not found:
        return []
    lines = ["", f"{phase}: the same server and requests, {what}"]
    lines.append(f"{'':38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>7}")
    for key in ("without", "with"):
        row = found[key]
        lines.append(
            f"{row['label']:38}{_num(row['rps']):>9}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['server_cores']:>7.2f}"
        )
    lines.append(f"  with / without: {found['ratio']:.3f}x")
    return lines


def replicas_lines(summary: Mapping[str, Any]) -> list[str]:
    found = summary.get("replicas")
    if not found:
        return []
    lines = [
        "",
        "replicas: Redis with one replica; the same server without and with WAIT 1 per batch",
        f"{'':38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>7}",
    ]
    for key in ("without", "with"):
        row = found[key]
        lines.append(
            f"{row['label']:38}{row['rps']:>9,.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['server_cores']:>7.2f}"
        )
    lines.append(
        f"  with / without: {found['ratio']:.3f}x; batches the replica did not confirm in "
        f"time: {found['shortfalls']} (clicks spooled: {found['spooled']})"
    )
    return lines


def cluster_lines(summary: Mapping[str, Any]) -> list[str]:
    found = summary.get("cluster")
    if not found:
        return []
    lines = [
        "",
        f"cluster: the same server on one Redis and on a local Redis Cluster (3 primaries, "
        f"3 replicas, {found['shards']} stream shards)",
        f"{'':50}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>7}",
    ]
    for key in ("single", "sharded", "cluster"):
        row = found[key]
        lines.append(
            f"{row['label']:50}{row['rps']:>9,.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['server_cores']:>7.2f}"
        )
    lines.append(f"  cluster / one Redis: {found['ratio']:.3f}x req/s")
    return lines


def targets(summary: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(what, met) for each target that this run measured."""
    found: list[tuple[str, bool]] = []
    single = summary["single"]
    ours, fastapi, asgi = single.get("clicktrack"), single.get("fastapi"), single.get("asgi")
    if ours and fastapi:
        ratio = ours["rps"] / fastapi["rps"]
        found.append(
            (
                f"redirect >= {TARGET_X_FASTAPI}x bare FastAPI ({ratio:.2f}x)",
                ratio >= TARGET_X_FASTAPI,
            )
        )
    if ours and asgi:
        ratio = ours["rps"] / asgi["rps"]
        found.append(
            (f"redirect >= {TARGET_X_ASGI}x raw ASGI ({ratio:.2f}x)", ratio >= TARGET_X_ASGI)
        )
    if ours:
        p99 = ours["p99_ms"]
        found.append((f"redirect p99 <= {TARGET_P99_MS:g} ms ({p99:.2f} ms)", p99 <= TARGET_P99_MS))
        found.append((f"redirect 0 errors ({ours['errors']})", ours["errors"] == 0))
    rules = summary.get("rules")
    if rules:
        ratio = rules["ratio"]
        found.append(
            (
                f"links with 3 rules >= {TARGET_RULES_X}x without ({ratio:.3f}x)",
                ratio >= TARGET_RULES_X,
            )
        )
    caps = summary.get("caps")
    if caps:
        ratio = caps["ratio"]
        found.append(
            (
                f"links with 2 click caps >= {TARGET_CAPS_X}x without ({ratio:.3f}x)",
                ratio >= TARGET_CAPS_X,
            )
        )
    durability = summary.get("durability")
    if durability:
        found.append((f"every 302 is in the stream ({durability['runs']} runs)", durability["ok"]))
    workers = summary.get("workers") or {}
    one = workers.get("one")
    for key in ("shared", "reuseport"):
        if one and key in workers:
            ratio = workers[key]["rps"] / one["rps"]
            label = workers[key]["label"]
            found.append(
                (f"{label} >= {TARGET_WORKERS_X}x 1 ({ratio:.2f}x)", ratio >= TARGET_WORKERS_X)
            )
    drain = summary.get("drain")
    if drain:
        rate = drain["clicks_per_s"]
        found.append(
            (
                f"drain >= {_num(TARGET_DRAIN_PER_S)} clicks/s ({_num(rate)})",
                rate >= TARGET_DRAIN_PER_S,
            )
        )
        found.append(
            (f"drain rows == clicks ({drain['rows']:,})", drain["rows"] == drain["clicks"])
        )
        found.append(
            (
                f"drain clicks in the rollups == clicks ({drain['counted']:,})",
                drain["counted"] == drain["clicks"],
            )
        )
        grown = drain["redis_after_windows_bytes"] - drain["redis_baseline_bytes"]
        found.append(
            (f"Redis memory back to baseline ({grown / MB:+.1f} MB)", grown <= MEMORY_SLACK_BYTES)
        )
    lag = summary.get("lag")
    if lag:
        p99, share = lag["lag_p99_s"], lag["share_of_peak"]
        # The pacing aims at 80 %; a machine that could not carry that much missed it, however
        # small the lag at the rate it did carry.
        found.append(
            (
                f"lag p99 < {TARGET_LAG_P99_S:g} s at 80% of peak ({p99:.3f} s at {share:.0%})",
                p99 < TARGET_LAG_P99_S and share >= MIN_SHARE_OF_PEAK,
            )
        )
        found.append((f"0 errors at 80% of peak ({lag['errors']})", lag["errors"] == 0))
    soak = summary.get("soak")
    if soak:
        growth = soak["rss_growth"]
        found.append(
            (f"worker RSS growth < 10% over the soak ({growth:+.1%})", growth < TARGET_RSS_GROWTH)
        )
    return found


def render(summary: Mapping[str, Any]) -> str:
    setup = summary["setup"]
    lines = [
        "",
        f"clicktrack benchmark, {summary['started']} ({'quick' if setup['quick'] else 'full'})",
        f"machine: {setup['cores']} cores, {setup['cpu_model']}",
    ]
    if summary["single"]:  # the phases run may have no pinned redirect (--phases drain)
        lines += [
            f"redirect: one server process on cpu {setup['server_cpu']}, "
            f"wrk -t1 -c{setup['connections']} -d{setup['duration_s']:g}s "
            f"on cpu {setup['wrk_cpu']}, median of {setup['runs']} interleaved runs",
            "",
            *redirect_table(summary),
        ]
    lines += rules_lines(summary)
    lines += caps_lines(summary)
    lines += replicas_lines(summary)
    lines += cluster_lines(summary)
    workers = workers_table(summary)
    if workers:
        lines += ["", "workers: nothing pinned (two workers and wrk share the cores)", *workers]
    durability = summary.get("durability")
    if durability:
        lines += [
            "",
            f"durability: 302s counted by wrk vs new stream entries, per run: "
            f"{_mark(durability['ok'])} ({durability['detail']})",
        ]
    drain = summary.get("drain")
    if drain:
        cores = ", ".join(f"{k} {v:.2f}" for k, v in drain["cpu_cores"].items())
        lines += [
            "",
            f"flusher drain: {drain['clicks']:,} clicks in {drain['seconds']:.2f} s = "
            f"{_num(drain['clicks_per_s'])} clicks/s; rows {drain['rows']:,}, in the rollups "
            f"{drain['counted']:,}; "
            f"start-up {drain['startup_s']:.2f} s; cores used: {cores}",
            f"Redis used_memory: baseline {drain['redis_baseline_bytes'] / MB:.1f} MB, "
            f"filled {drain['redis_filled_bytes'] / MB:.1f} MB, after the drain "
            f"{drain['redis_after_bytes'] / MB:.1f} MB (stream: {drain['stream_entries_after']} "
            f"entries, {drain['stream_bytes_after']:,} bytes; "
            f"{drain['duplicate_window_keys']:,} duplicate-detection windows), "
            f"{drain['redis_after_windows_bytes'] / MB:.1f} MB once those expire",
        ]
    lines += capacity_lines(summary)
    lag = summary.get("lag")
    if lag:
        lines += [
            f"lag at 80% of peak: {_num(lag['rps'])} req/s offered ({lag['share_of_peak']:.0%} "
            f"of peak) for {lag['seconds']:g} s: lag p50 {lag['lag_p50_s']:.3f} s, "
            f"p99 {lag['lag_p99_s']:.3f} s, max {lag['lag_max_s']:.3f} s; "
            f"redirect p99 {lag['p99_ms']:.2f} ms, errors {lag['errors']}",
        ]
    soak = summary.get("soak")
    if soak:
        lines += [
            f"soak: {soak['seconds']:g} s at {_num(soak['rps'])} req/s: worker RSS "
            f"{soak['rss_first_kib'] / 1024:.1f} -> {soak['rss_last_kib'] / 1024:.1f} MiB "
            f"(max {soak['rss_max_kib'] / 1024:.1f}), growth {soak['rss_growth']:+.1%}; "
            f"lag p99 {soak['lag_p99_s']:.3f} s; errors {soak['errors']}",
        ]
    lines += ["", "targets:"]
    lines += [f"  {_mark(ok):7}{what}" for what, ok in targets(summary)]
    quiet = summary["quiet"]
    lines += ["", f"CPU: {quiet['verdict']}"]
    notes = quiet["notes"]
    lines += [f"  {note}" for note in notes[:MAX_NOTES]]
    if len(notes) > MAX_NOTES:
        lines.append(f"  ... and {len(notes) - MAX_NOTES} more (all in bench/results/latest.json)")
    return "\n".join(lines)
