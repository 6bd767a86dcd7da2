"""The benchmark's pure parts (bench/): wrk's result line, the request mix, the report. The
harness itself runs for minutes on a quiet machine; these keep its pieces from rotting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.edge.session import SessionCookie
from app.links.rules import as_json, validate_rules
from bench import report
from bench.options import PHASES, parse_cpus
from bench.pipeline import percentile
from bench.services import BENCH_RULES
from bench.traffic import LinkRow, click_payloads, redirect_requests
from bench.wrk import LUA_SCRIPT, WrkError, WrkRun, parse_result

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/
  1 threads and 64 connections
BENCH_RESULT {"requests": 250000, "duration_us": 10000000, "connect": 0, "read": 1, \
"write": 0, "status": 2, "timeout": 3, "p50_us": 2100, "p90_us": 2900, "p99_us": 4100, \
"max_us": 9000, "mean_us": 2200.5}
"""


def test_parse_result() -> None:
    result = parse_result(WRK_OUTPUT)
    assert result.rps == 25_000
    assert (result.p50_ms, result.p99_ms) == (2.1, 4.1)
    assert (result.status_errors, result.socket_errors, result.errors) == (2, 4, 6)
    assert result.good == 249_998


def test_parse_result_without_a_result_line() -> None:
    with pytest.raises(WrkError):
        parse_result("unable to connect to 127.0.0.1:8000 Connection refused\n")


def test_wrk_command_and_pacing(tmp_path: Path) -> None:
    run = WrkRun("http://127.0.0.1:1/", tmp_path / "r.txt", cpus="1", mean_delay_ms=2.5)
    command = run.command("wrk")
    assert command[:3] == ["taskset", "-c", "1"]
    assert "-c64" in command and "-d10s" in command and str(LUA_SCRIPT) in command
    assert run.env()["BENCH_DELAY_MS"] == "2.500"
    assert "BENCH_DELAY_MS" not in WrkRun("http://x/", tmp_path / "r.txt").env()
    assert LUA_SCRIPT.is_file()


def test_parse_cpus() -> None:
    assert parse_cpus("1") == {1}
    assert parse_cpus("0,2-3") == {0, 2, 3}


def test_percentile_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.50) == 50.0
    assert percentile([], 0.99) == 0.0


def test_redirect_requests_carry_valid_sessions() -> None:
    session = SessionCookie(b"k" * 32, name="ct_sid", secure=False, domain=None, max_age=None)
    requests = redirect_requests([f"c{n}" for n in range(50)], session, 2000)
    assert all(r.path.startswith("/e/c") for r in requests)
    cookies = [v for r in requests for k, v in r.headers if k == "Cookie"]
    assert 0.2 < len(cookies) / len(requests) < 0.4
    assert all(session.from_cookie_header(cookie) for cookie in cookies)
    fields = requests[0].line().split("\t")
    assert fields[0] == "GET" and all(": " in field for field in fields[2:])


def test_click_payloads_are_distinct_clicks() -> None:
    links = [LinkRow(n, f"c{n}", 1) for n in range(1, 20)]
    payloads = list(click_payloads(links, 500))
    assert len(set(payloads)) == 500


def _summary() -> dict[str, Any]:
    row = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 3.0, "errors": 0, "server_cores": 0.99}
    return {
        "started": "2026-01-01 00:00 UTC",
        "setup": {
            "quick": True, "cores": 2, "cpu_model": "x", "server_cpu": "0", "wrk_cpu": "1",
            "connections": 64, "duration_s": 5.0, "runs": 3,
        },
        "single": {
            "asgi": {**row, "label": "raw", "rps": 50_000.0},
            "fastapi": {**row, "label": "fastapi", "rps": 8_000.0},
            "clicktrack": {**row, "label": "clicktrack", "rps": 25_000.0},
        },
        "workers": {
            "one": {**row, "label": "one"},
            "shared": {**row, "label": "shared", "rps": 1500.0},
            "reuseport": {**row, "label": "reuseport", "rps": 1800.0},
        },
        "rules": {
            "without": {**row, "label": "without rules", "rps": 20_000.0},
            "with": {**row, "label": "with 3 rules", "rps": 19_000.0},
            "ratio": 0.95,
        },
        "durability": {"ok": True, "runs": 3, "detail": "fine"},
        "drain": {
            "clicks": 100, "seconds": 1.0, "clicks_per_s": 100.0, "rows": 100, "counted": 100,
            "startup_s": 0.5,
            "redis_baseline_bytes": 10, "redis_filled_bytes": 100, "redis_after_bytes": 50,
            "stream_entries_after": 0, "stream_bytes_after": 10, "duplicate_window_keys": 7,
            "redis_after_windows_bytes": 10, "cpu_cores": {"flusher": 0.9},
            "payload_bytes_per_click": 400.0, "postgres_bytes_per_row": 350.0,
        },
        "clicks_per_batch": 31.5,
        "lag": {
            "rps": 800.0, "share_of_peak": 0.8, "seconds": 10.0, "lag_p50_s": 0.1,
            "lag_p99_s": 0.2, "lag_max_s": 0.3, "p99_ms": 2.0, "errors": 0,
        },
        "quiet": {"disturbed": False, "verdict": "quiet", "notes": []},
    }  # fmt: skip


def test_report_targets() -> None:
    met = dict(report.targets(_summary()))
    assert met["redirect >= 3.0x bare FastAPI (3.12x)"]
    assert not met["redirect >= 0.6x raw ASGI (0.50x)"]
    assert not met["shared >= 1.7x 1 (1.50x)"]
    assert met["reuseport >= 1.7x 1 (1.80x)"]
    assert not met["drain >= 50,000 clicks/s (100)"]
    assert met["links with 3 rules >= 0.9x without (0.950x)"]


def test_report_renders_every_section() -> None:
    text = report.render(_summary())
    for heading in (
        "x raw ASGI", "x 1 worker", "durability:", "flusher drain:", "lag at 80%",
        "with / without: 0.950x",
    ):  # fmt: skip
        assert heading in text
    for figure in (
        "per worker (one core): 25,000",
        "batch at that rate: 31.5",
        "entry: 1 bytes",
        "Postgres bytes per click row, indexes included: 350",
        "spool bytes per click: 403",
    ):
        assert figure in text
    assert "MISSED" in text and "CPU: quiet" in text


def test_a_drain_only_report_has_no_empty_redirect_table() -> None:
    summary = {**_summary(), "single": {}}
    text = report.render(summary)
    assert "flusher drain:" in text
    assert "x raw ASGI" not in text and "redirect: one server process" not in text


def test_the_rules_of_the_benchmarks_links_are_valid_rules() -> None:
    """Three country and device rules, accepted by the API's own check."""
    rules = validate_rules(BENCH_RULES, ("example.com", "*.example.com"))
    assert [rule.when for rule in rules] == ["country", "device", "device"]
    assert as_json(rules) == BENCH_RULES  # stored as the API would store them


def test_the_rules_phase_is_a_phase() -> None:
    assert "rules" in PHASES
