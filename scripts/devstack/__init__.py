"""The clicktrack development stack: find or start Redis and Postgres, then run the app or checks.

Usually called through make:

    scripts/devstack run                     migrate, then serve the app (and the flusher)
    scripts/devstack test [-- PYTEST_ARGS]   ruff, ruff format, mypy, pytest
    scripts/devstack services                only the two servers, until Ctrl-C
    scripts/devstack faults|bench|loadtest [-- ARGS]

(that is, ``.venv/bin/python scripts/devstack COMMAND``). Each of Redis and Postgres is found
separately, in this order:

1. the configured URL (CLICKTRACK_REDIS_URL / CLICKTRACK_DATABASE_URL, from the environment
   or the project's .env file, as the app reads them), if it answers;
2. a server answering on 127.0.0.1 at the default port (6379; 5432 as user postgres);
3. a throwaway server started here from local binaries, its data under .data/
   (Redis on port 56379, Postgres on port 55432).

CLICKTRACK_LOCAL_SERVICES=1 skips 1 and 2. Only processes started here are ever stopped, by
PID. The package is also a library for tests (scripts/ is on their import path):
``devstack.servers.start_redis()`` and ``start_postgres()`` start throwaway servers on chosen
ports and return handles with stop() and kill().

Modules: ``__main__`` (the command line), ``base`` (paths, settings, log, errors), ``signals``,
``net``, ``probes``, ``procs``, ``servers`` and ``pgsetup`` (throwaway servers), ``discovery``
(DevStack), ``steps`` (child processes), ``servicesenv`` (.data/services.env: the servers
``run`` and ``services`` use, for the app's commands run beside them), then one module per
command: ``run``, ``test`` (with ``browser``), ``services``, ``faults``, ``bench``, ``loadtest``.
"""
