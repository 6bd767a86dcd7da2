"""Traffic dimensions of a click (issue 19): country (and ASN) from the client address,
device type, browser and OS from the user agent, the referrer's host and the first language
of Accept-Language. Pure: no I/O per call (the one file read, an operator's MaxMind-format
database, happens when a ``Resolver`` is built), every resolver cached per distinct value.

One module per job: ``agent.py`` (user agent), ``country.py`` (address and trusted header),
``referrer.py``, ``language.py``; ``resolve.py`` is the entry point that joins them
(``Resolver.resolve`` -> ``Dimensions``). This ``__init__`` re-exports nothing, so importing
one job does not load the others' packages.
"""
