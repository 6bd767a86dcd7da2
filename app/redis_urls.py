"""The Redis URLs clicktrack reads, beyond redis-py's own: ``redis+cluster://`` (seeds of a
Redis Cluster) and ``redis+sentinel://`` (Sentinels naming a primary). Pure: the settings
check a URL with it when they are read, the client factory (``app/core/redis.py``) opens it.
It sits beside ``app/settings.py`` and, like it, every package may import it.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel",)
REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)


def multi_host(url: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """The user, password and ``(host, port)`` list of a multi-host URL's authority. Raises
    ``ValueError`` in words for no host, or an entry that is not ``host:port`` with a port
    from 1 to 65535."""
    netloc = urlsplit(url).netloc
    userinfo, _, hostlist = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"expected host:port (a port from 1 to 65535) for each host, found {item!r}"
            )
        hosts.append((host.strip("[]"), int(port)))
    return unquote(user) or None, unquote(password) or None, hosts


def sentinel_name(url: str) -> tuple[str, int]:
    """The primary's name and database of a ``redis+sentinel://`` URL's path
    (``/<name>[/<db>]``). Raises ``ValueError`` in words when the name is missing or the
    database is not a number."""
    name, _, db = urlsplit(url).path.strip("/").partition("/")
    if not name:
        raise ValueError("expected redis+sentinel://host:port/<primary name>: the name is missing")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError(f"expected a database number after the primary's name, found {db!r}")
    return name, int(db or 0)


def check_redis_url(url: str) -> str:
    """``url`` if clicktrack can open it; else ``ValueError`` saying what is wrong."""
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ValueError(
            "expected redis://, rediss://, unix://, redis+cluster://, rediss+cluster:// "
            "or redis+sentinel://"
        )
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        multi_host(url)
    if scheme in SENTINEL_SCHEMES:
        sentinel_name(url)
    return url
