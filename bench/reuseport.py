"""One uvicorn server on a socket of its own bound with ``SO_REUSEPORT``.

Start it N times on the same port and the kernel spreads incoming connections over the N
sockets by a hash of each connection, where ``uvicorn --workers N`` has N processes accept
from one shared socket (whichever wakes first wins, which under wrk's 64 long-lived
connections often leaves one worker with most of them). Same app, same server settings as
``python -m app.serve``; only the socket differs::

    python -m bench.reuseport --port 8000 app.main:create_app --factory
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn


def reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reuseport", description=__doc__)
    parser.add_argument("app", help="module:attribute of the ASGI app")
    parser.add_argument("--factory", action="store_true", help="the attribute builds the app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    config = uvicorn.Config(
        options.app,
        factory=options.factory,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[reuseport_socket(options.host, options.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
