"""User agent -> device type, browser and OS (app/dimensions/agent.py), on the user agents of
current phones, tablets, desktops and crawlers as their browsers send them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dimensions.agent import MAX_FAMILY_LENGTH, UNKNOWN_AGENT, Agent, parse_agent

# (user agent, expected Agent). Browsers' reduced user agents freeze the Android version at
# 10 and the device at "K", and macOS at 10_15_7: what uap-core reports is what they say.
CASES = {
    "iPhone Safari": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        Agent("mobile", "Mobile Safari", 18, "iOS", 18),
    ),
    "iPhone Chrome": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        Agent("mobile", "Chrome Mobile iOS", 131, "iOS", 18),
    ),
    "Pixel Chrome": (
        "Mozilla/5.0 (Linux; Android 15; Pixel 9 Pro) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        Agent("mobile", "Chrome Mobile", 131, "Android", 15),
    ),
    "Android Chrome, reduced": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
        Agent("mobile", "Chrome Mobile", 131, "Android", 10),
    ),
    "Samsung Galaxy S24, Samsung Internet": (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        Agent("mobile", "Samsung Internet", 26, "Android", 14),
    ),
    "Android Firefox": (
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        Agent("mobile", "Firefox Mobile", 133, "Android", 14),
    ),
    "iPad Safari": (
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        Agent("tablet", "Mobile Safari", 17, "iOS", 17),
    ),
    "Galaxy Tab S9 Chrome": (
        "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        Agent("tablet", "Chrome", 131, "Android", 14),
    ),
    "Lenovo Tab, no Mobile token": (
        "Mozilla/5.0 (Linux; Android 13; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36",
        Agent("tablet", "Chrome", 131, "Android", 13),
    ),
    "Android Firefox tablet": (
        "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0",
        Agent("tablet", "Firefox Mobile", 133, "Android", 14),
    ),
    "Windows Chrome": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        Agent("desktop", "Chrome", 131, "Windows", 10),
    ),
    "Windows Edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
        Agent("desktop", "Edge", 131, "Windows", 10),
    ),
    "Windows Firefox": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Agent("desktop", "Firefox", 133, "Windows", 10),
    ),
    "macOS Safari": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
        Agent("desktop", "Safari", 18, "Mac OS X", 10),
    ),
    "Linux Firefox": (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Agent("desktop", "Firefox", 133, "Linux", None),
    ),
    "Ubuntu Firefox": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Agent("desktop", "Firefox", 133, "Ubuntu", None),
    ),
    "ChromeOS": (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        Agent("desktop", "Chrome", 131, "Chrome OS", 14541),
    ),
    "Googlebot": (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Agent("bot", "Googlebot", 2, None, None),
    ),
    "Googlebot smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
        Agent("bot", "Googlebot", 2, "Android", 6),
    ),
    "bingbot": (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        Agent("bot", "bingbot", 2, None, None),
    ),
    "Facebook link preview": (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        Agent("bot", "FacebookBot", 1, None, None),
    ),
    "Slack link preview": (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        Agent("bot", "Slackbot-LinkExpanding", 1, None, None),
    ),
    "Discord link preview": (
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        Agent("bot", "Discordbot", 2, None, None),
    ),
    "Samsung smart TV": (
        "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "76.0.3809.146/6.0 TV Safari/537.36",
        Agent("other", "Safari", None, "Tizen", 6),
    ),
    "curl": ("curl/8.5.0", Agent("other", "curl", 8, None, None)),
}


@pytest.mark.parametrize(("user_agent", "expected"), CASES.values(), ids=CASES.keys())
def test_real_user_agents(user_agent: str, expected: Agent) -> None:
    assert parse_agent(user_agent) == expected


@pytest.mark.parametrize("user_agent", ["", "   ", "\t"])
def test_an_empty_user_agent_is_unknown(user_agent: str) -> None:
    assert parse_agent(user_agent) == UNKNOWN_AGENT


def test_nothing_matched_is_unknown_not_other_family() -> None:
    """uap-core's "Other" family is no browser: stored as None."""
    agent = parse_agent("zz9-plural-z-alpha")
    assert (agent.browser, agent.os, agent.device) == (None, None, "other")


@given(st.text(max_size=300))
def test_never_raises_and_stays_bounded(text: str) -> None:
    agent = parse_agent(text)
    for family in (agent.browser, agent.os):
        assert family is None or 0 < len(family) <= MAX_FAMILY_LENGTH
    for major in (agent.browser_major, agent.os_major):
        assert major is None or major >= 0
