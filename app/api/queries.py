"""Unknown query parameters are refused on every API route, as unknown body fields are.

A misspelt or misplaced parameter silently ignored acts on something else than the caller
meant (``POST /money/withdrawals?publisher_id=3`` with a network's key would request the
network's own withdrawal), so it answers 422 ``unknown query parameter 'foo'`` instead.

One mechanism for every route: ``install`` adds ``refuse_unknown_query`` to the app's own
dependencies before the routers are included, so each API route gets it. It compares the
request's query names with the matched route's declared query parameters (its own and its
dependencies', by alias), computed once per route. The dashboard's pages (``app.dashboard``)
and the docs pages are left as they are; the redirect (``/e/...``) never reaches FastAPI.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.errors import InvalidInput
from app.links.model import echoed

# The modules whose routes this leaves alone: pages for a browser, which may carry any query
# a browser or a link adds.
_EXEMPT_MODULES = ("app.dashboard", "app.api.docs")

# The attribute a route keeps its declared names in, computed on its first request (a route
# is not hashable, and an id could be reused by another app's route in the same process).
_CACHE = "_clicktrack_query_names"


def _query_names(dependant: Dependant) -> set[str]:
    """The query names ``dependant`` and its sub-dependencies take (a route's parameter
    classes, ``DayRange`` and the like, are sub-dependencies)."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def declared_query(route: APIRoute) -> frozenset[str] | None:
    """The query parameter names ``route`` takes (aliases, as a caller writes them), or None
    for a route this check does not cover."""
    try:
        cached: frozenset[str] | None = getattr(route, _CACHE)
    except AttributeError:
        module = getattr(route.endpoint, "__module__", "")
        exempt = module.startswith(_EXEMPT_MODULES)
        cached = None if exempt else frozenset(_query_names(route.dependant))
        setattr(route, _CACHE, cached)
    return cached


async def refuse_unknown_query(request: Request) -> None:
    """Raise ``InvalidInput`` (422) for the first query parameter the matched route does not
    take."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = declared_query(route)
    if known is None:
        return
    for name in request.query_params:
        if name not in known:
            raise InvalidInput(f"unknown query parameter {echoed(name)!r}")


def install(app: FastAPI) -> None:
    """Make every route included after this call refuse unknown query parameters (call it
    before ``include_router``: a router's routes take the app's dependencies as they are
    included)."""
    app.router.dependencies.append(Depends(refuse_unknown_query))
