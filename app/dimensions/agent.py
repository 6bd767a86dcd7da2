"""User agent -> device type, browser and OS (family and major version). Pure.

The parsing is uap-python (``ua-parser``) over the uap-core rules of ``ua-parser-builtins``,
matched by the compiled ``ua-parser-rs``: the families are uap-core's (``Chrome Mobile``,
``Mobile Safari``, ``Samsung Internet``, ``Edge``, ``Mac OS X``, ``Android``, ``iOS``, ...),
the same names every other uap port reports. uap-core has no device *type*; it is derived
here from what uap-core did find (``device_type``), not from our own patterns: a crawler is
uap-core's device family ``Spider``, a tablet its ``iPad`` / ``Generic Tablet`` /
``Generic_Android_Tablet``, and an Android device without ``Mobile`` in its user agent,
which is how Android browsers tell a tablet from a phone (Chrome's and Firefox's documented
convention).

Known limit: iPadOS 13+ Safari sends the macOS user agent by default, so such an iPad is a
``desktop`` here; only client hints could tell, and a redirect has none.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from ua_parser import OS, Device, Parser, Result, UserAgent, load_lazy_builtins
from ua_parser.regex import Resolver as RustResolver

DeviceType = Literal["desktop", "mobile", "tablet", "bot", "other"]

# Families longer than this are cut: uap-core builds some families from text captured out of
# the user agent, and a stored dimension must stay small whatever a client sends.
MAX_FAMILY_LENGTH = 64
# A major version is stored as an integer; more digits than this is no real version.
MAX_VERSION_DIGITS = 9

# uap-core answers "Other" when no rule matched: unknown, stored as None like a missing value.
_UNKNOWN_FAMILY = "Other"
_TABLET_DEVICE_FAMILIES = frozenset({"iPad", "Generic Tablet", "Kindle", "Kindle Fire"})
_TABLET_DEVICE_BRANDS = frozenset({"Generic_Android_Tablet"})
_PHONE_DEVICE_FAMILIES = frozenset(
    {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}
)
_MOBILE_OS_FAMILIES = frozenset(
    {"iOS", "Windows Phone", "KaiOS", "BlackBerry OS", "Firefox OS", "Symbian OS", "Sailfish"}
)
_DESKTOP_OS_FAMILIES = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "SUSE",
        "Mint",
        "Arch Linux",
        "Chrome OS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    }
)


@dataclass(frozen=True, slots=True)
class Agent:
    """What one user agent says: ``device`` one of ``DeviceType``; ``browser``/``os`` a
    uap-core family (at most ``MAX_FAMILY_LENGTH`` characters); ``*_major`` the major
    version as an integer. ``None`` = unknown (no user agent, or no rule matched)."""

    device: DeviceType | None = None
    browser: str | None = None
    browser_major: int | None = None
    os: str | None = None
    os_major: int | None = None


UNKNOWN_AGENT = Agent()


@functools.cache
def _parser() -> Parser:
    """The one parser of the process: compiling uap-core's ~1,000 rules takes tens of
    milliseconds, paid once on first use (lazy builtins: the Rust matcher reads the rules'
    text only, so the Python regex objects are never built)."""
    return Parser(RustResolver(load_lazy_builtins()))


def parse_agent(user_agent: str) -> Agent:
    """``user_agent`` (the header's text, any) -> its ``Agent``; never raises. Uncached: the
    ``Resolver`` caches it per distinct user agent."""
    if not user_agent.strip():
        return UNKNOWN_AGENT
    result = _parser().parse(user_agent)
    return Agent(
        device=device_type(result, user_agent),
        browser=_family(result.user_agent),
        browser_major=_major(result.user_agent),
        os=_family(result.os),
        os_major=_major(result.os),
    )


def device_type(result: Result, user_agent: str) -> DeviceType:
    """The device type of a uap-core ``result`` of ``user_agent``, first rule that applies:
    a crawler, a tablet, a phone, a desktop OS, else ``other`` (TVs, consoles, HTTP
    libraries such as curl, anything uap-core cannot place)."""
    device: Device | None = result.device
    os_family = result.os.family if result.os is not None else None
    if device is not None and device.family == "Spider":
        return "bot"
    if device is not None and (
        device.family in _TABLET_DEVICE_FAMILIES or device.brand in _TABLET_DEVICE_BRANDS
    ):
        return "tablet"
    if os_family == "Android":
        # Android browsers put "Mobile" in a phone's user agent and leave it out on a tablet.
        return "mobile" if "Mobile" in user_agent else "tablet"
    if (device is not None and device.family in _PHONE_DEVICE_FAMILIES) or (
        os_family in _MOBILE_OS_FAMILIES
    ):
        return "mobile"
    if os_family in _DESKTOP_OS_FAMILIES:
        return "desktop"
    return "other"


def _family(part: UserAgent | OS | None) -> str | None:
    if part is None or not part.family or part.family == _UNKNOWN_FAMILY:
        return None
    return part.family[:MAX_FAMILY_LENGTH]


def _major(part: UserAgent | OS | None) -> int | None:
    if part is None or part.major is None:
        return None
    major = part.major
    # isdecimal, not isdigit: int() refuses superscripts that isdigit accepts.
    if not major.isascii() or not major.isdecimal() or len(major) > MAX_VERSION_DIGITS:
        return None
    return int(major)
