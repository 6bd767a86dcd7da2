"""Which addresses the sender may connect to. Pure.

A publisher writes the URL; clicktrack's servers call it. Without a rule, a publisher could
make them call the operator's own network: loopback services, private addresses, a cloud
provider's metadata service (which hands out credentials). So by default only public
(globally routable) addresses are allowed. The operator may allow more:

- ``CLICKTRACK_POSTBACK_ALLOW_PRIVATE=true``: any address but the metadata ones;
- ``CLICKTRACK_POSTBACK_ALLOW_NETWORKS=10.1.0.0/16,fd00::/8``: those networks, whatever
  they are (the only way to allow a metadata address, should anyone need to).

The rule is applied to the address the name resolves to at send time, and the connection
is made to that very address (``app/sender/http.py``), so a name that resolves to a public
address when checked and a private one when connecting (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

from app.settings import Settings

IpAddress = IPv4Address | IPv6Address

METADATA = frozenset({ip_address("169.254.169.254"), ip_address("fd00:ec2::254")})


@dataclass(frozen=True)
class DestinationRules:
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()

    def refusal(self, address: IpAddress) -> str | None:
        """Why the sender must not connect to ``address``, in words; None when it may."""
        if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:127.0.0.1
            address = address.ipv4_mapped
        if _within(address, self.allow_networks):
            return None
        what = kind_of(address)
        if what is None:
            return None
        if self.allow_private and address not in METADATA:
            return None
        return f"destination {address} is {what}"


def destination_rules(settings: Settings) -> DestinationRules:
    """The rules ``CLICKTRACK_POSTBACK_ALLOW_PRIVATE`` and ``_ALLOW_NETWORKS`` set."""
    return DestinationRules(settings.postback_allow_private, settings.postback_allow_networks)


def written_refusal(url: str, rules: DestinationRules) -> str | None:
    """Why an endpoint's URL can never be sent, known when it is written: its host is an
    address the rules refuse, or ``localhost`` (a loopback name, RFC 6761). A name is judged
    only at send time, on the address it then resolves to."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return rules.refusal(ip_address("127.0.0.1"))
    try:
        address = ip_address(host)
    except ValueError:
        return None
    return rules.refusal(address)


def _within(address: IpAddress, networks: Iterable[str]) -> bool:
    for network in networks:
        parsed = ip_network(network, strict=False)
        if parsed.version == address.version and address in parsed:
            return True
    return False


def kind_of(address: IpAddress) -> str | None:
    """What makes ``address`` not public (``a loopback address``, ...); None for a public
    one. The metadata addresses are named first: they are link-local or private too."""
    if address in METADATA:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((words for hit, words in checks if hit), None)
