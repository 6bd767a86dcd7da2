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
