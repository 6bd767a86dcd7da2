"""``devstack bench``: the benchmark, bench/run.py [-- ARGS]."""

from __future__ import annotations

from devstack.base import PROJECT_ROOT, PYTHON, MissingBinaries
from devstack.servers import find_postgres_bin_dir, find_redis_server
from devstack.steps import child_env, not_available, run_step


def cmd_bench(extra: list[str]) -> int:
    """The benchmark starts Redis and Postgres of its own (nothing else may share them while it
    measures), so only the binaries are needed here."""
    script = PROJECT_ROOT / "bench" / "run.py"
    if not script.is_file():
        return not_available("the benchmark", script)
    missing = [
        kind
        for kind, found in (("redis", find_redis_server()), ("postgres", find_postgres_bin_dir()))
        if found is None
    ]
    if missing:
        raise MissingBinaries(missing)
    code, _ = run_step("bench", [PYTHON, "-m", "bench.run", *extra], child_env({}))
    return code
