"""Addresses: whether a local port listens, and the Redis/Postgres URLs' parts."""

from __future__ import annotations

import socket
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redact(url: str) -> str:
    """The URL with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def database_name(dsn: str) -> str:
    """The database named in a Postgres URL ('' if none)."""
    return unquote(urlsplit(dsn).path.lstrip("/"))


def with_database(dsn: str, name: str) -> str:
    """The same Postgres URL, naming another database."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + quote(name, safe="")))
