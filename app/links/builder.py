"""A publisher's tracking URL and its QR code, pure.

``tracking_url`` writes what the redirect reads (``app/edge/params.py``): the link's short URL
with the tracking strings ``af``, ``cn``, ``cv``, ``dp`` as a percent-encoded query (RFC 3986,
UTF-8; a space is ``%20``, never ``+``), in that order, empty ones left out. Every value is
checked by the redirect's own rule (``app/core/tracking.py``), so a URL built here never
carries a value the redirect would drop and flag ``params_invalid``.

``qr_svg`` and ``qr_png`` draw a text (the tracking URL) as a QR code with ``segno``: a
maintained encoder, pure Python with no dependencies of its own. Always a full QR code (never
a Micro QR, which many phone cameras do not read), with the standard quiet zone of 4 modules.
"""

from __future__ import annotations

import io
from urllib.parse import quote

import segno

from app.core.tracking import value_problem
from app.errors import InvalidInput

# Pixels per QR module: 1 is the smallest image that still scans on a good screen; past 40
# a version-40 code (177 modules + quiet zone) would be over 7,000 pixels wide.
MIN_QR_SCALE = 1
MAX_QR_SCALE = 40
DEFAULT_QR_SCALE = 4


def tracking_url(
    short_url: str,
    *,
    af: str | None = None,
    cn: str | None = None,
    cv: str | None = None,
    dp: str | None = None,
) -> str:
    """``short_url`` plus the non-empty tracking strings as a query, in the order af, cn, cv,
    dp: ``tracking_url("https://s.example.com/e/abc", af="001", dp="a b")`` is
    ``"https://s.example.com/e/abc?af=001&dp=a%20b"``. ``None`` and ``""`` are left out
    (the redirect reads an empty value as absent). A short URL that already has a query gets
    the pairs after ``&``.

    Raises ``InvalidInput`` with ``field`` the parameter's name when a value is one the
    redirect would drop: over 128 characters, a control or invisible character, or a lone
    surrogate (not encodable as UTF-8).
    """
    pairs: list[str] = []
    for name, value in (("af", af), ("cn", cn), ("cv", cv), ("dp", dp)):
        if not value:
            continue
        problem = value_problem(value)
        if problem is not None:
            raise InvalidInput(problem, field=name)
        try:
            # safe="": "&", "=", "+", "#", "/" and "%" are all escaped, so the value comes
            # back exactly as given whatever it holds.
            encoded = quote(value, safe="", encoding="utf-8", errors="strict")
        except UnicodeEncodeError:
            raise InvalidInput("is not valid text (a lone surrogate)", field=name) from None
        pairs.append(f"{name}={encoded}")
    if not pairs:
        return short_url
    return f"{short_url}{'&' if '?' in short_url else '?'}{'&'.join(pairs)}"


def _qr(text: str) -> segno.QRCode:
    try:
        # make_qr, not make: never a Micro QR (see the module's docstring).
        return segno.make_qr(text, error="m", boost_error=True)
    except segno.DataOverflowError:
        raise InvalidInput(
            "is too long to fit in a QR code; use shorter tracking strings", field="url"
        ) from None


def _check_scale(scale: int) -> None:
    if not MIN_QR_SCALE <= scale <= MAX_QR_SCALE:
        raise InvalidInput(
            f"must be between {MIN_QR_SCALE} and {MAX_QR_SCALE} pixels per module",
            field="size",
        )


def qr_svg(text: str, *, scale: int = DEFAULT_QR_SCALE) -> str:
    """``text`` as a QR code, an SVG document (``<?xml ...?><svg ...>``, UTF-8 text): black
    modules on white, ``scale`` user units per module, the quiet zone included. Raises
    ``InvalidInput`` (field ``size``) for a scale outside 1-40, (field ``url``) for a text
    too long for the largest QR code (2,331 bytes at error level M)."""
    _check_scale(scale)
    out = io.BytesIO()
    _qr(text).save(out, kind="svg", scale=scale, xmldecl=True, svgns=True, nl=False)
    return out.getvalue().decode("utf-8")


def qr_png(text: str, *, scale: int = DEFAULT_QR_SCALE) -> bytes:
    """``text`` as a QR code, PNG bytes (grey-scale): ``scale`` pixels per module, so
    ``(modules + 8) * scale`` pixels square with the quiet zone. Raises ``InvalidInput`` as
    ``qr_svg`` does."""
    _check_scale(scale)
    out = io.BytesIO()
    _qr(text).save(out, kind="png", scale=scale)
    return out.getvalue()
