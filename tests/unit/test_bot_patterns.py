"""Bot patterns: the link-preview fetchers of social and chat apps are bots, browsers are not.
Real user agents, one per fetcher; each is matched by the package or by our own patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.flusher.quality import LINK_PREVIEW_PATTERNS, BotList, load_bot_patterns

BOTS = load_bot_patterns(None)
BLUESKY = "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)"

PREVIEW_FETCHERS = [
    BLUESKY,
    "Mastodon/4.3.2 (http.rb/5.2.0; +https://mastodon.social/) Bot",
    "Mastodon/4.2.10 (http.rb/5.1.1; +https://mastodon.social/)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0",
    "WhatsApp/2",  # Signal's link preview
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Iframely/1.3.1 (+https://iframely.com/docs/about)",
    "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
    "skype-url-preview@microsoft.com",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; Google-PageRenderer "
    "Google (+https://developers.google.com/+/web/snippet/)) Chrome/56.0.2924.87 Safari/537.36",
    "Mozilla/5.0 (compatible; Google-PageRenderer)",
    "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Mozilla/5.0 (compatible; Pinterestbot/1.0; +https://www.pinterest.com/bot.html)",
    "Pinterest/0.2 (+https://www.pinterest.com/bot.html)",
    # iMessage's link preview
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
    "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
    "Mozilla/5.0 (compatible; Snap URL Preview Service; bot; snapchat; "
    "https://developers.snap.com/robots)",
    "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
    "Mattermost-Bot/1.1",
    "Synapse (bot; +https://github.com/matrix-org/synapse)",
    "Misskey/2024.10.1 (https://misskey.io)",
    "Pleroma 2.6.0; https://pleroma.example <admin@pleroma.example>",
    "Akkoma 3.13.2; https://akkoma.example <admin@akkoma.example>",
    "gotosocial/0.16.0 (+https://gts.example.org)",
    "Lemmy/0.19.3; +https://lemmy.ml",
]

BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
    # the in-app browsers of social apps carry a real visitor: not bots
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.40.97;FBBV/620000000]",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36 Instagram 350.0.0.40.90 Android",
]


@pytest.mark.parametrize("agent", PREVIEW_FETCHERS)
def test_link_preview_fetchers_are_bots(agent: str) -> None:
    assert BotList(BOTS).is_bot(agent)


@pytest.mark.parametrize("agent", BROWSERS)
def test_browsers_are_not_bots(agent: str) -> None:
    assert not BotList(BOTS).is_bot(agent)


def test_the_bluesky_card_fetcher_is_ours_to_match() -> None:
    """The package misses it (the reason LINK_PREVIEW_PATTERNS exists)."""
    assert any(re.search(p, BLUESKY) for p in LINK_PREVIEW_PATTERNS)


def test_each_of_our_patterns_is_needed_and_used() -> None:
    """Each of our patterns matches at least one listed fetcher (no dead pattern)."""
    for pattern in LINK_PREVIEW_PATTERNS:
        assert any(re.search(pattern, agent) for agent in PREVIEW_FETCHERS), pattern


def test_the_readmes_example_click_is_billable_and_curls_own_is_not() -> None:
    """The walkthrough's click (README, step 4) sends a browser's user agent: curl's own is on
    the crawler list, so the walkthrough would end with no billable click."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    step = readme[readme.index("# 4. follow it") :]
    step = step[: step.index("```")]
    agents = re.findall(r"-A '([^']+)'", step)
    assert len(agents) == 1, "the example click names its user agent with -A '...'"
    bots = BotList(BOTS)
    assert not bots.is_bot(agents[0])
    assert bots.is_bot("curl/8.5.0")
    assert "curl/8" in step  # and the README says why
