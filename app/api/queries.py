"""Unknown query parameters are refused on every API route, as unknown body fields are.

A misspelt or misplaced parameter silently ignored acts on something else than the caller
meant (``POST /money/withdrawals?publisher_id=3`` with a network's key would request the
network's own withdrawal), so it answers 422 ``unknown query parameter 'foo'`` instead.

One mechanism for every route: ``install`` adds ``refuse_unknown_query`` to the app's own
dependencies before the routers are included, so each API route gets it. It compares the
request's query names with the matched route's declared query parameters (its own and its
dependencies', by alias), computed once per route. A parameter given twice that is not a list
parameter (``?limit=5&limit=6``) is refused the same way (422 ``'limit' given twice``), never
silently taken as its last value; a list parameter (``status``) may repeat. The dashboard's
pages (``app.dashboard``, which check repeats themselves) and the docs pages are left as they
are; the redirect (``/e/...``) never reaches FastAPI.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Annotated, Any, Union, get_args, get_origin

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


def _is_list(annotation: Any) -> bool:
    """Whether a parameter's type takes several values (``list[str] | None``, ...)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_list(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_list(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Iterable) and origin not in (str, bytes)
    )


def _query_names(dependant: Dependant) -> dict[str, bool]:
    """The query names ``dependant`` and its sub-dependencies take (a route's parameter
    classes, ``DayRange`` and the like, are sub-dependencies), each with whether it may
    repeat (a list parameter)."""
    names = {p.alias: _is_list(p.field_info.annotation) for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def declared_query(route: APIRoute) -> dict[str, bool] | None:
    """The query parameter names ``route`` takes (aliases, as a caller writes them), each
    with whether it may repeat, or None for a route this check does not cover."""
    try:
        cached: dict[str, bool] | None = getattr(route, _CACHE)
    except AttributeError:
        module = getattr(route.endpoint, "__module__", "")
        exempt = module.startswith(_EXEMPT_MODULES)
        cached = None if exempt else _query_names(route.dependant)
        setattr(route, _CACHE, cached)
    return cached


def given_twice(name: str) -> str:
    """The words for a single-valued parameter (or a JSON key) given more than once."""
    return f"{echoed(name)!r} given twice"


async def refuse_unknown_query(request: Request) -> None:
    """Raise ``InvalidInput`` (422) for the first query parameter the matched route does not
    take, or that is given twice and is not a list parameter."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = declared_query(route)
    if known is None:
        return
    seen: set[str] = set()
    for name, _value in request.query_params.multi_items():
        if name not in known:
            raise InvalidInput(f"unknown query parameter {echoed(name)!r}")
        if name in seen and not known[name]:
            raise InvalidInput(given_twice(name))
        seen.add(name)


def install(app: FastAPI) -> None:
    """Make every route included after this call refuse unknown query parameters (call it
    before ``include_router``: a router's routes take the app's dependencies as they are
    included)."""
    app.router.dependencies.append(Depends(refuse_unknown_query))
