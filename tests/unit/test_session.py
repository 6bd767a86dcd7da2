"""Session cookie signing: only what we signed verifies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.edge.session import SessionCookie


def make(secret: bytes = b"s" * 32) -> SessionCookie:
    return SessionCookie(secret, name="ct_sid", secure=True, domain=None, max_age=None)


def test_new_sessions_verify_and_differ() -> None:
    cookie = make()
    ids = {cookie.new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        assert cookie.verify(cookie.sign(session_id)) == session_id


@given(value=st.text(max_size=120))
def test_arbitrary_values_never_verify(value: str) -> None:
    cookie = make()
    assert cookie.verify(value) is None or cookie.sign(cookie.verify(value) or "") == value


@given(position=st.integers(min_value=0, max_value=44), replacement=st.sampled_from("AbZ09-_"))
def test_any_single_character_change_is_detected(position: int, replacement: str) -> None:
    cookie = make()
    signed = cookie.sign(cookie.new_session_id())
    position %= len(signed)
    tampered = signed[:position] + replacement + signed[position + 1 :]
    if tampered != signed:
        assert cookie.verify(tampered) is None


def test_another_secret_does_not_verify() -> None:
    signed = make(b"a" * 32).sign("session")
    assert make(b"b" * 32).verify(signed) is None


def test_cookie_header_parsing() -> None:
    cookie = make()
    signed = cookie.sign("abc")
    assert cookie.from_cookie_header(f"a=1; ct_sid={signed}; b=2") == signed
    assert cookie.session_id(signed) == "abc"
    assert cookie.from_cookie_header(f"xct_sid={signed}") is None
    assert cookie.from_cookie_header("") is None
    assert cookie.from_cookie_header(None) is None


def test_set_cookie_attributes() -> None:
    plain = make().set_cookie_header("abc").decode()
    assert plain.endswith("; Path=/; HttpOnly; SameSite=Lax; Secure")
    full = SessionCookie(
        b"k" * 32, name="sid", secure=False, domain="example.com", max_age=60
    ).set_cookie_header("abc")
    assert full.decode().endswith(
        "; Path=/; HttpOnly; SameSite=Lax; Domain=example.com; Max-Age=60"
    )


# Arbitrary input: whatever a client sends as a Cookie header, parsing never raises, and only
# a value we signed comes back (so only such a value is ever echoed into a Set-Cookie).
cookie_text = st.text(max_size=300) | st.binary(max_size=300).map(
    lambda raw: raw.decode("utf-8", "replace")
)


@given(header=cookie_text, inject=st.booleans())
def test_any_cookie_header_parses_without_error(header: str, inject: bool) -> None:
    cookie = make()
    if inject:
        header = f"{header}; ct_sid={header}"
    found = cookie.from_cookie_header(header)
    assert found is None or cookie.verify(found) == cookie.session_id(found)


session_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";,"),
    min_size=1,
    max_size=60,
)


@given(session_id=session_ids)
def test_what_we_sign_verifies_and_round_trips_through_the_headers(session_id: str) -> None:
    cookie = make()
    signed = cookie.sign(session_id)
    assert cookie.verify(signed) == session_id
    header = cookie.set_cookie_header(signed)
    assert b"\r" not in header and b"\n" not in header
    assert cookie.from_cookie_header(f"other=1; {header.decode().split(';')[0]}") == signed


@given(session_id=session_ids, cut=st.integers(min_value=1, max_value=30))
def test_a_truncated_signed_value_never_verifies(session_id: str, cut: int) -> None:
    cookie = make()
    signed = cookie.sign(session_id)
    assert cookie.verify(signed[:-cut]) is None


def _first_cookie_by_splitting(header: str, name: str) -> str | None:
    """The plain reading of a Cookie header: split on ';', the first part with our name."""
    for part in header.split(";"):
        part = part.strip(" \t")
        if part.startswith(name + "="):
            return part[len(name) + 1 :].strip()
    return None


@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(["ct_sid", "xct_sid", "a", "ct_sid ", " ct_sid"]),
            st.text(alphabet="ct_sid=; \tx.", max_size=12),
        ),
        max_size=6,
    ),
    values=st.lists(st.sampled_from(["VALID", "forged.sig", "", "a b"]), min_size=6, max_size=6),
)
def test_cookie_header_reading_matches_splitting(parts: list[str], values: list[str]) -> None:
    cookie = make()
    valid = cookie.sign(cookie.new_session_id())
    header = "; ".join(
        f"{part}={values[n].replace('VALID', valid)}" for n, part in enumerate(parts)
    )
    expected = _first_cookie_by_splitting(header, "ct_sid")
    if expected is not None and cookie.verify(expected) is None:
        expected = None
    assert cookie.from_cookie_header(header) == expected


def test_session_ids_are_url_safe_and_not_shared_with_a_forked_child() -> None:
    import os
    import re

    cookie = make()
    first = cookie.new_session_id()  # the parent has drawn a block of ids
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", first)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, cookie.new_session_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_next = cookie.new_session_id()
    assert child_id != parent_next and len(child_id) == 20
