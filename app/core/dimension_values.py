"""The values a traffic dimension can take, shared by the resolvers that store them
(``app.dimensions``), the link rules that match them (``app.links.rules``) and the reports
that filter on them (``app.traffic.filters``): one list each, so a value a rule or a filter
accepts is one a click can have.

- ``DEVICE_TYPES``: the device types ``app/dimensions/agent.py`` derives from a user agent
  (its ``DeviceType``; tests/unit/test_link_rules.py keeps the two equal).
- ``NOT_COUNTRIES``: two-letter values that stand for "unknown", never a click's country:
  ``XX`` (a CDN's unknown), ``T1`` (a CDN's Tor), ``A1``/``A2``/``O1`` (MaxMind legacy:
  anonymous proxy, satellite, other), ``ZZ`` (ISO 3166 user-assigned, commonly "unknown").
  Stored as NULL, so reports show them as unknown.
"""

from __future__ import annotations

DEVICE_TYPES = ("desktop", "mobile", "tablet", "bot", "other")
NOT_COUNTRIES = frozenset({"XX", "T1", "A1", "A2", "O1", "ZZ"})
