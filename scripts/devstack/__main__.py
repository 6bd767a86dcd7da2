"""The command line: ``python scripts/devstack COMMAND [-- ARGS]`` (what the Makefile runs).

Only argument parsing and dispatch; each command lives in a module of its own."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as `python scripts/devstack`: Python put this folder first on sys.path. Put scripts/
    # there instead, as for the former scripts/devstack.py, so that `devstack` is this package
    # (and its modules, e.g. devstack.bench, never shadow top-level ones such as bench).
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import argparse
from collections.abc import Callable, Sequence

import devstack
from devstack.base import DevstackError, log
from devstack.bench import cmd_bench
from devstack.faults import cmd_faults
from devstack.loadtest import cmd_loadtest
from devstack.run import cmd_run
from devstack.services import cmd_services
from devstack.signals import Interrupted, install_signal_handlers
from devstack.test import cmd_test

COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "run": (cmd_run, "migrate, then run the app (and the flusher) until Ctrl-C"),
    "test": (cmd_test, "ruff check, ruff format --check, mypy, pytest [-- PYTEST_ARGS]"),
    "services": (cmd_services, "find or start Redis and Postgres, print them, wait for Ctrl-C"),
    "faults": (cmd_faults, "the fault-injection suite, tests/faults [-- PYTEST_ARGS]"),
    "bench": (cmd_bench, "the benchmark, bench/run.py [-- ARGS]"),
    "loadtest": (cmd_loadtest, "the locust load test, loadtests/locustfile.py [-- ARGS]"),
}
TAKES_EXTRA = {"test", "faults", "bench", "loadtest"}


def split_extra(args: list[str]) -> tuple[list[str], list[str]]:
    """(devstack's own arguments, those after the first -- for the tool run)."""
    if "--" not in args:
        return args, []
    split = args.index("--")
    return args[:split], args[split + 1 :]


def build_parser() -> argparse.ArgumentParser:
    """The parser of devstack's own arguments: a command, one of COMMANDS."""
    doc = devstack.__doc__
    parser = argparse.ArgumentParser(
        prog="devstack",
        description=doc.split("\n\n")[0] if doc else None,
        epilog="Arguments after -- go to the tool run (pytest, bench/run.py, locust).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, description=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv (default: sys.argv[1:]), run the command; its exit code."""
    args, extra = split_extra(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    options = parser.parse_args(args)
    if extra and options.command not in TAKES_EXTRA:
        parser.error(f"{options.command} takes no arguments after --")
    install_signal_handlers()
    try:
        return COMMANDS[options.command][0](extra)
    except Interrupted as exc:
        log(f"stopped ({exc})")
        return 128 + exc.signum
    except DevstackError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
