"""Reference 2, the floor: a bare FastAPI route answering ``/e/{code}`` with a 302 and a cookie.

This is what the redirect would cost written the obvious way, before doing any of its work:
FastAPI's routing, parameter validation and response classes. Run it as the benchmark does::

    uvicorn bench.reference_fastapi:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

DESTINATION = "https://shop.example.com/item/1?aff_click_id=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/e/{code}")
async def follow(code: str) -> RedirectResponse:
    response = RedirectResponse(DESTINATION, status_code=302)
    response.headers["cache-control"] = "no-store"
    response.set_cookie("ct_sid", "Zm9vYmFyYmF6cXV4cXV1eA.c2lnbmF0dXJlc2lnbmF0dQ", httponly=True)
    return response
