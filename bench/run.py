"""``make bench``: the redirect against two reference servers, worker scaling, the flusher.

    python -m bench.run [--quick] [--soak] [--force] ...      (or: python bench/run.py)

In one run, on its own throwaway Redis and Postgres:

1. *redirect*: a raw ASGI 302 (``bench/reference_asgi.py``), a bare FastAPI 302
   (``bench/reference_fastapi.py``) and clicktrack (``python -m app.serve``, the complete
   redirect), each one process pinned to one core, measured by wrk pinned to the other core,
   in interleaved rounds; median of the rounds. After each clicktrack run the new stream
   entries are counted against the 302s wrk received.
2. *rules*: the same clicktrack server, the same requests to the same links, without rules
   and with three country and device rules each (``bench/services.py``'s ``BENCH_RULES``:
   issue 19), in interleaved rounds; the ratio of the two.
2b. *caps*: the same, links without click caps and with two each (a day's and a month's,
   never reached: every click checked and counted in Redis).
3. *workers*: clicktrack with one worker, two workers sharing a socket (uvicorn --workers 2)
   and two processes on SO_REUSEPORT sockets (``bench/reuseport.py``), nothing pinned.
4. *drain*: N clicks pre-filled into the stream, drained by one ``python -m app.flusher``.
5. *lag*: paced load at 80 % of the redirect's peak with a flusher running, nothing pinned.
5b. *replicas* (``--phases replicas`` only): the redirect against a Redis with one replica,
   without and with WAIT 1 per batch (``bench/replicas.py``).
5c. *cluster* (``--phases cluster`` only): the redirect against a local Redis Cluster (3
   primaries, 3 replicas, 6 stream shards) and against one Redis (``bench/cluster.py``).
6. *soak* (``--soak`` only): the same for 10 minutes, sampling the worker's RSS.

Every measured run is refused when other processes use the CPU (``bench/cpu.py``), unless
``--force``, which marks the report as disturbed. Prints one report and writes it as JSON to
``bench/results/latest.json``. docs/performance.md says how to read it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import json
import os
import platform
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from bench import PROJECT_ROOT, pipeline, report
from bench.cluster import phase_cluster
from bench.harness import Disturbed, Harness, Server, clicks_per_batch, median_row, say
from bench.options import Options, parse_cpus
from bench.replicas import phase_replicas
from bench.services import (
    CAPS_CODE_PREFIX,
    RULES_CODE_PREFIX,
    STOPPING_ERRORS,
    Process,
    child_env,
    pin_tree,
    seed_capped_links,
    seed_rule_links,
)

RESULTS = PROJECT_ROOT / "bench" / "results"
EXIT_ERROR = 1
EXIT_DISTURBED = 3
EXIT_INTERRUPTED = 130


class Bench(Harness):
    """The phases of one benchmark run, in order, and the summary they fill."""

    def phase_redirect(self) -> None:
        cpu = self.options.server_cpu
        servers = [
            self.start_server(
                "asgi", "raw ASGI 302 (reference)", [self.uvicorn("bench.reference_asgi:app")],
                cpus=cpu, env=lambda port: child_env({}), clicktrack=False,
            ),
            self.start_server(
                "fastapi", "bare FastAPI 302 (reference)",
                [self.uvicorn("bench.reference_fastapi:app")],
                cpus=cpu, env=lambda port: child_env({}), clicktrack=False,
            ),
            self.clicktrack_pinned(),
        ]  # fmt: skip
        self.others_on_wrk_cpu(True)
        found = self.rounds(servers, pinned=True)
        self.others_on_wrk_cpu(False)
        self.summary["single"] = {
            server.key: median_row(server.label, found[server.key]) for server in servers
        }
        self.check_durability(found["clicktrack"])
        # Over the warm-up and the measured runs: the batch size at peak.
        self.summary["clicks_per_batch"] = clicks_per_batch(servers[2].port)
        self.stop_servers(["asgi", "fastapi"])

    def clicktrack_pinned(self) -> Server:
        existing = self.servers.get("clicktrack")
        if existing is not None:
            return existing
        return self.start_server(
            "clicktrack",
            "clicktrack redirect",
            [["-m", "app.serve"]],
            cpus=self.options.server_cpu,
            env=lambda port: self.app_env("clicktrack", port),
            clicktrack=True,
        )

    def phase_rules(self) -> None:
        """The redirect of links with three country and device rules against the same links
        without rules: one pinned clicktrack server, the same request mix (the codes of the
        copies with rules instead), interleaved rounds. The requests come from 127.0.0.1, so
        the country rule never matches: every desktop click evaluates all three rules."""
        copied = asyncio.run(seed_rule_links(self.stores.database_url))
        say(f"{copied:,} links copied with three country and device rules")
        ratio = self.copies_against_originals("rules", RULES_CODE_PREFIX, "rules", "3 rules")
        say(f"rules: with three rules / without: {ratio:.3f}x")

    def phase_caps(self) -> None:
        """The redirect of links with two click caps (a day's and a month's, never reached)
        against the same links without caps, as ``phase_rules``: every click of a copy is
        checked and counted in Redis (one script call, batched) before it is recorded."""
        copied = asyncio.run(seed_capped_links(self.stores.database_url))
        say(f"{copied:,} links copied with two click caps")
        ratio = self.copies_against_originals("caps", CAPS_CODE_PREFIX, "caps", "2 caps")
        say(f"caps: with two caps / without: {ratio:.3f}x")

    def copies_against_originals(self, phase: str, prefix: str, noun: str, what: str) -> float:
        """Measure the pinned clicktrack server on the phase 1 requests and on the same
        requests to the copies of the links (code ``<prefix><code>``), in interleaved rounds;
        the summary's ``phase`` entry gets both rows and their ratio (with / without)."""
        copies_file = self.workdir / f"requests-{phase}.txt"
        lines = self.requests_file.read_text().splitlines(keepends=True)
        copies_file.write_text(
            "".join(line.replace("\t/e/", f"\t/e/{prefix}", 1) for line in lines)
        )
        server = self.clicktrack_pinned()
        processes = server.processes
        plain = Server(
            f"{phase}_0", f"clicktrack, links without {noun}", server.port, processes,
            clicktrack=True,
        )  # fmt: skip
        copies = Server(
            f"{phase}_{what.split()[0]}", f"clicktrack, links with {what}", server.port,
            processes, clicktrack=True,
        )  # fmt: skip
        self.requests_for[copies.key] = copies_file
        self.others_on_wrk_cpu(True)
        found = self.rounds([plain, copies], pinned=True)
        self.others_on_wrk_cpu(False)
        rows = {
            name: median_row(server.label, found[server.key])
            for name, server in (("without", plain), ("with", copies))
        }
        ratio = rows["with"]["rps"] / rows["without"]["rps"] if rows["without"]["rps"] else 0.0
        self.summary[phase] = {**rows, "ratio": ratio}
        self.check_durability([*found[plain.key], *found[copies.key]])
        return ratio

    def phase_workers(self) -> None:
        metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=self.workdir))
        serve = [["-m", "app.serve"]]
        servers = [
            self.start_server(
                "one", "clicktrack, 1 worker", serve, cpus=None,
                env=lambda port: self.app_env("one", port), clicktrack=True,
            ),
            self.start_server(
                "shared", "clicktrack, 2 workers, shared socket", serve, cpus=None,
                env=lambda port: self.app_env("shared", port, CLICKTRACK_WORKERS="2"),
                clicktrack=True,
            ),
            self.start_server(
                "reuseport", "clicktrack, 2 workers, SO_REUSEPORT",
                [["-m", "bench.reuseport", "app.main:create_app", "--factory", "--port", "{port}"]]
                * 2,
                cpus=None,
                env=lambda port: {
                    **self.app_env("reuseport", port),
                    "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                },
                clicktrack=True,
            ),
        ]  # fmt: skip
        found = self.rounds(servers, pinned=False)
        self.summary["workers"] = {
            server.key: median_row(server.label, found[server.key]) for server in servers
        }
        self.check_durability([run for runs in found.values() for run in runs])
        self.stop_servers([server.key for server in servers])

    def start_flusher(self) -> Process:
        dimensions = "on" if self.options.dimensions else "off"
        env = self.app_env("flusher", None, CLICKTRACK_DIMENSIONS=dimensions)
        return Process("flusher", ["-m", "app.flusher"], env, self.workdir)

    def phase_drain(self) -> None:
        n = self.options.drain_clicks
        self.wait_quiet("the flusher drain")
        say(f"pre-filling the stream with {n:,} clicks, then draining it with one flusher")
        result = asyncio.run(
            pipeline.drain(
                self.stores.redis_url,
                self.stores.database_url,
                self.keys,
                self.links,
                n,
                self.start_flusher,
                self.stores.pids_by_name(),
                within_s=max(300.0, n / 1000),  # a slow flusher is a result too
            )
        )
        if result.foreign_cores > self.options.max_foreign_drain:
            self.disturbance(
                f"the flusher drain: other processes used {result.foreign_cores:.2f} cores"
            )
        say(
            f"drained {n:,} clicks in {result.seconds:.2f} s: {result.clicks_per_s:,.0f}/s "
            f"(cores used: {', '.join(f'{k} {v:.2f}' for k, v in result.cpu_cores.items())}; "
            f"others {result.foreign_cores:.2f})"
        )
        self.summary["drain"] = result.as_dict()

    def peak(self) -> tuple[float, float]:
        """The clicktrack redirect's peak req/s and p50 (measured now if not yet)."""
        single = self.summary.get("single", {}).get("clicktrack")
        if single is None:
            server = self.clicktrack_pinned()
            self.others_on_wrk_cpu(True)
            self.wrk_run(server, self.options.warmup_s)
            runs = [self.measure(server, n) for n in range(self.options.runs)]
            single = median_row(server.label, runs)
            self.summary.setdefault("single", {})["clicktrack"] = single
            self.check_durability(runs)
        return float(single["rps"]), float(single["p50_ms"])

    def pace(self, server: Server, target_rps: float, p50_ms: float) -> float:
        """The mean per-connection delay (ms) that makes wrk offer about target_rps."""
        connections = self.options.connections
        delay = max(0.0, 1000 * connections / target_rps - p50_ms)
        for _ in range(4):
            rate = self.wrk_run(server, 3.0, pinned=False, mean_delay_ms=delay).rps
            say(
                f"pacing: mean delay {delay:.2f} ms gives {rate:,.0f} req/s (aim {target_rps:,.0f})"
            )
            if abs(rate - target_rps) <= 0.02 * target_rps or rate <= 0:
                break
            overhead = 1000 * connections / rate - delay  # response time and timer slack
            # Half way only: the response time itself changes with the rate.
            delay = max(0.0, (delay + 1000 * connections / target_rps - overhead) / 2)
        return delay

    def wait_flushed(self, what: str, within_s: float = 180.0) -> None:
        """Until the flusher has stored the calibration runs' clicks: start from no backlog."""
        deadline = time.monotonic() + within_s
        while True:
            if not asyncio.run(pipeline.unflushed(self.stores.redis_url, self.keys)):
                return
            if time.monotonic() > deadline:
                say(f"before {what}: the flusher has not caught up in {within_s:.0f} s")
                return
            time.sleep(1.0)

    def paced(self, what: str, seconds: float, rss: bool) -> dict[str, Any]:
        peak_rps, p50_ms = self.peak()
        server = self.clicktrack_pinned()
        # Only the clicks of this run: earlier runs' entries would read as lag.
        self.redis.unlink(self.keys.clicks_stream)
        flusher = self.start_flusher()
        self.servers["flusher"] = Server("flusher", "flusher", 0, [flusher], False)
        # Nothing pinned: the web worker, wrk, the flusher, Redis and Postgres share both
        # cores as the scheduler sees fit (pinned, the flusher's side would have one core
        # with wrk on it, and starve).
        pin_tree(server.pids(), None)
        try:
            delay = self.pace(server, 0.8 * peak_rps, p50_ms)
            self.wait_flushed(what)
            self.wait_quiet(what)
            lags: list[float] = []
            samples: list[tuple[float, int]] = []

            def sample(running: Callable[[], bool]) -> None:
                found = asyncio.run(
                    pipeline.sample_while(
                        self.stores.redis_url,
                        self.keys,
                        running,
                        rss_pid=server.processes[0].pid if rss else None,
                    )
                )
                lags.extend(found[0])
                samples.extend(found[1])

            self.meter.start()
            result = self.wrk_run(server, seconds, pinned=False, mean_delay_ms=delay, during=sample)
            cpu = self.meter.stop()
        finally:
            self.stop_servers(["flusher"])
            pin_tree(server.pids(), parse_cpus(self.options.server_cpu))
        # The flusher writes all along, as in the drain: the same allowance.
        if cpu.foreign_cores > self.options.max_foreign_drain:
            self.disturbance(f"{what}: other processes used {cpu.foreign_cores:.2f} cores")
        figures: dict[str, Any] = {
            "seconds": seconds,
            "rps": round(result.rps, 1),
            "share_of_peak": round(result.rps / peak_rps, 3),
            "mean_delay_ms": round(delay, 3),
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "errors": result.errors,
            "lag_samples": len(lags),
            "lag_p50_s": round(pipeline.percentile(lags, 0.50), 3),
            "lag_p99_s": round(pipeline.percentile(lags, 0.99), 3),
            "lag_max_s": round(max(lags, default=0.0), 3),
            "cpu": cpu.as_dict(),
        }
        if rss:
            values = [kib for _, kib in samples] or [0]
            figures.update(
                rss_samples_kib=samples,
                rss_first_kib=values[0],
                rss_last_kib=values[-1],
                rss_max_kib=max(values),
                rss_growth=round((values[-1] - values[0]) / values[0], 4) if values[0] else 0.0,
            )
        say(
            f"{what}: {result.rps:,.0f} req/s, lag p99 {figures['lag_p99_s']:.3f} s, "
            f"errors {result.errors}"
        )
        return figures

    def phase_replicas(self) -> None:
        phase_replicas(self)

    def phase_cluster(self) -> None:
        phase_cluster(self)

    def phase_lag(self) -> None:
        self.summary["lag"] = self.paced("the lag run at 80% of peak", self.options.lag_s, False)

    def phase_soak(self) -> None:
        self.summary["soak"] = self.paced("the soak at 80% of peak", self.options.soak_s, True)

    # --- all of it ----------------------------------------------------------------------

    def setup_summary(self) -> dict[str, Any]:
        model = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
        return {
            "quick": self.options.quick,
            "cores": os.cpu_count(),
            "cpu_model": model or platform.processor(),
            "python": platform.python_version(),
            "server_cpu": self.options.server_cpu,
            "wrk_cpu": self.options.wrk_cpu,
            "connections": self.options.connections,
            "duration_s": self.options.duration_s,
            "runs": self.options.runs,
            "links": self.options.links,
        }

    def run(self) -> dict[str, Any]:
        self.summary = {
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "setup": self.setup_summary(),
            "single": {},
        }
        self.set_up()
        phases = {
            "redirect": self.phase_redirect,
            "rules": self.phase_rules,
            "caps": self.phase_caps,
            "workers": self.phase_workers,
            "drain": self.phase_drain,
            "lag": self.phase_lag,
            "replicas": self.phase_replicas,
            "cluster": self.phase_cluster,
        }
        for name, phase in phases.items():
            if name in self.options.phases:
                phase()
        if self.options.soak:
            self.phase_soak()
        self.summary["runs"] = [run.as_dict() for run in self.runs]
        self.summary["quiet"] = {
            "disturbed": self.disturbed,
            "verdict": (
                "DISTURBED: other load during some runs; these figures are not trustworthy"
                if self.disturbed
                else f"quiet (before each run every core >= {self.options.min_idle:.0%} idle; "
                f"during it other processes <= {self.options.max_foreign:.2f} cores)"
            ),
            "notes": self.notes,
        }
        self.summary["targets"] = [
            {"target": what, "met": ok} for what, ok in report.targets(self.summary)
        ]
        return self.summary


def write_results(summary: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    options = Options.parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop what we started, as on Ctrl-C
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir = PROJECT_ROOT / ".data" / "bench" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(options, workdir)
    try:
        summary = bench.run()
    except Disturbed as exc:
        say(f"REFUSED: the machine is busy with other work, so no figures are reported: {exc}")
        say("run again when it is quiet (or with --force to see disturbed figures)")
        return EXIT_DISTURBED
    except STOPPING_ERRORS as exc:
        say(f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        return EXIT_INTERRUPTED
    finally:
        bench.close()
    print(report.render(summary), flush=True)
    path = write_results(summary)
    say(f"results written to {path.relative_to(PROJECT_ROOT)}; logs in {workdir}")
    missed = [t for t in summary["targets"] if not t["met"]]
    return EXIT_ERROR if options.fail_on_target and missed else 0


if __name__ == "__main__":
    sys.exit(main())
