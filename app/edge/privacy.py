"""What of the client's IP address is kept: all of it, its network, or a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from app.settings import IpMode

TRUNCATE_V4_PREFIX = 24
TRUNCATE_V6_PREFIX = 48


class IpMasker:
    def __init__(self, mode: IpMode, secret: bytes) -> None:
        self.mode = mode
        self._secret = secret

    def __call__(self, ip: str | None) -> str | None:
        if ip is None or self.mode is IpMode.full:
            return ip
        if self.mode is IpMode.hash:
            # Keyed, so that the 2^32 IPv4 addresses cannot simply be hashed and looked up.
            return hmac.new(self._secret, ip.encode(), hashlib.sha256).hexdigest()[:32]
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None  # not an address (a unix socket peer, say): nothing to keep
        prefix = TRUNCATE_V4_PREFIX if address.version == 4 else TRUNCATE_V6_PREFIX
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
