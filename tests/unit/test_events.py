from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.clicks.record import (
    MAJOR,
    MINOR,
    READERS,
    STREAM_FIELD,
    Click,
    EventError,
    Flag,
    UnknownVersion,
    decode,
    encode,
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TRACKING = st.none() | st.text(max_size=128)
OPTIONAL_TEXT = st.none() | st.text(max_size=300)

clicks = st.builds(
    Click,
    click_id=st.uuids().map(str),
    ts_us=INT64,
    link_id=INT64,
    code=st.text(max_size=32),
    publisher_id=INT64,
    af=TRACKING,
    cn=TRACKING,
    cv=TRACKING,
    dp=TRACKING,
    session_id=st.text(max_size=64),
    session_new=st.booleans(),
    ip=OPTIONAL_TEXT,
    user_agent=OPTIONAL_TEXT,
    referer=OPTIONAL_TEXT,
    accept_language=OPTIONAL_TEXT,
    method=st.sampled_from(["GET", "HEAD"]) | st.text(max_size=8),
    flags=st.integers(min_value=0, max_value=int(max(Flag)) * 2 - 1),
    ip_key=st.none() | st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    country=st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    rule=st.none() | st.integers(min_value=1, max_value=10),
)
json_values = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=10,
)

SAMPLE = Click(
    click_id="018f3f5e-7b1a-7cc3-9d2e-4a5b6c7d8e9f",
    ts_us=1_717_171_717_000_001,
    link_id=7,
    code="summer",
    publisher_id=3,
    af="blog-42",
    cn=None,
    cv="Ünïcødé ✓",
    dp="x" * 128,
    session_id="s-1",
    session_new=True,
    ip="203.0.113.0",
    user_agent="Mozilla/5.0",
    referer=None,
    accept_language="en-US,en;q=0.9",
    method="GET",
    flags=Flag.prefetch | Flag.head,
    ip_key="0f" * 16,
    country="NL",
    rule=2,
)


def body_of(click: Click) -> dict[str, Any]:
    body = orjson.loads(encode(click))
    assert isinstance(body, dict)
    return body


def assert_decodes_or_rejects(raw: bytes) -> None:
    """The contract: a click, or EventError; never another exception."""
    try:
        click = decode(raw)
    except EventError:
        return
    assert isinstance(click, Click)
    assert decode(encode(click)) == click


@given(clicks)
def test_round_trip(click: Click) -> None:
    assert decode(encode(click)) == click


@given(clicks)
def test_encoding_is_one_versioned_json_object(click: Click) -> None:
    body = body_of(click)
    assert (body["v"], body["mv"]) == (MAJOR, MINOR)
    assert body["id"] == click.click_id
    assert body["t"] == click.ts_us


def test_stream_field_is_c() -> None:
    assert STREAM_FIELD == b"c"


def test_unknown_fields_are_ignored() -> None:
    body = body_of(SAMPLE) | {"future": [1, 2, 3]}
    assert decode(orjson.dumps(body)) == SAMPLE


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b"\xff\xfe", b"null", b"[]", b'"click"', b"42", b'{"v": 1'],
)
def test_rejects_what_is_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(EventError):
        decode(raw)


@pytest.mark.parametrize("version", ["absent", None, 0, -1, "1", "2", [1], True, 1.0, 2.5])
def test_a_version_that_cannot_be_is_corrupt(version: object) -> None:
    """Not an int of 1 or more: not a record of any version, past or future (a dead letter)."""
    body = body_of(SAMPLE)
    if version == "absent":
        del body["v"]
    else:
        body["v"] = version
    with pytest.raises(EventError, match="version") as caught:
        decode(orjson.dumps(body))
    assert not isinstance(caught.value, UnknownVersion)


@pytest.mark.parametrize("minor", [None, -1, "1", 1.5, True, [0]])
def test_a_minor_that_cannot_be_is_corrupt(minor: object) -> None:
    body = body_of(SAMPLE) | {"mv": minor}
    with pytest.raises(EventError, match="version") as caught:
        decode(orjson.dumps(body))
    assert not isinstance(caught.value, UnknownVersion)


@pytest.mark.parametrize(("major", "minor"), [(2, 0), (3, 7), (99, None), (2**40, 1)])
def test_an_unknown_major_is_told_apart_to_be_parked(major: int, minor: int | None) -> None:
    body = body_of(SAMPLE) | {"v": major, "mv": minor}
    if minor is None:
        del body["mv"]
    with pytest.raises(UnknownVersion, match=f"record version {major}.{minor or 0}") as caught:
        decode(orjson.dumps(body))
    assert (caught.value.major, caught.value.minor) == (major, minor or 0)
    assert isinstance(caught.value, EventError)  # old callers still catch it


def test_an_unknown_major_is_parked_whatever_its_fields() -> None:
    """A newer major may change every field: only the envelope is read."""
    for body in ({"v": 2}, {"v": 2, "id": 5, "t": "yesterday"}, {"v": 2, "mv": 3, "c": [1]}):
        with pytest.raises(UnknownVersion):
            decode(orjson.dumps(body))


def test_decode_reads_the_majors_it_is_given() -> None:
    raw = encode(SAMPLE)
    with pytest.raises(UnknownVersion, match="reads major 2"):
        decode(raw, {2: READERS[1]})
    newer = orjson.dumps(body_of(SAMPLE) | {"v": 2, "mv": 0})
    assert decode(newer, {1: READERS[1], 2: READERS[1]}) == SAMPLE
    assert set(READERS) == {MAJOR}


def test_a_newer_minor_with_extra_fields_is_read() -> None:
    body = body_of(SAMPLE) | {"mv": MINOR + 1, "geo": {"cc": "FR"}, "tier": 3, "z": None}
    assert decode(orjson.dumps(body)) == SAMPLE


def test_a_record_without_minor_is_minor_0() -> None:
    """What the writers before minors existed wrote."""
    body = body_of(SAMPLE)
    body.pop("mv", None)
    assert decode(orjson.dumps(body)) == SAMPLE
    assert decode(orjson.dumps(body | {"mv": 0})) == SAMPLE


def test_minor_1_adds_the_ip_key_and_nothing_else() -> None:
    """The release of minor 1 wrote ``"mv": 1`` and ``ipk``; a minor 0 record (no ``mv``,
    no ``ipk``: an older web release, a spool or a parked entry replayed late) still reads,
    its key None, every other field as written."""
    body = body_of(SAMPLE)
    assert body["ipk"] == SAMPLE.ip_key
    assert set(body) == set(body_of(MINOR_0_SAMPLE)) == {"v", "mv", *MINOR_0_KEYS, *LATER_KEYS}
    minor_0 = {key: body[key] for key in ("v", *MINOR_0_KEYS)}
    assert decode(orjson.dumps(minor_0)) == MINOR_0_SAMPLE
    assert decode(orjson.dumps(minor_0 | {"mv": 0})) == MINOR_0_SAMPLE


MINOR_0_KEYS = (
    "id", "t", "l", "code", "p", "af", "cn", "cv", "dp", "s", "sn", "ip", "ua", "ref", "lang",
    "m", "f",
)  # fmt: skip
LATER_KEYS = ("ipk", "cc", "r")  # minors 1, 2, 3
MINOR_0_SAMPLE = replace(SAMPLE, ip_key=None, country=None, rule=None)


def test_minor_2_adds_the_country_and_nothing_else() -> None:
    """The release of minor 2 writes ``"mv": 2`` and ``cc`` (the country the redirect
    resolved in truncate and hash modes); a minor 1 record (an older web release, a spool or
    a parked entry replayed late) still reads, its country None."""
    body = body_of(SAMPLE)
    assert body["cc"] == "NL"
    minor_1 = {key: value for key, value in body.items() if key not in ("cc", "r")}
    assert decode(orjson.dumps(minor_1 | {"mv": 1})) == replace(SAMPLE, country=None, rule=None)


def test_minor_3_adds_the_rule_and_nothing_else() -> None:
    """The release of minor 3 writes ``"mv": 3`` and ``r`` (the 1-based position of the
    link's rule that chose the destination, null for none); a minor 2 record still reads,
    its rule None."""
    assert MINOR == 3
    body = body_of(SAMPLE)
    assert (body["mv"], body["r"]) == (3, 2)
    assert set(body) == {"v", "mv", *MINOR_0_KEYS, *LATER_KEYS}
    assert body_of(replace(SAMPLE, rule=None))["r"] is None
    minor_2 = {key: value for key, value in body.items() if key != "r"} | {"mv": 2}
    assert decode(orjson.dumps(minor_2)) == replace(SAMPLE, rule=None)


@pytest.mark.parametrize("rule", [True, "2", 2.0, [2]])
def test_a_rule_that_is_not_a_whole_number_is_corrupt(rule: object) -> None:
    with pytest.raises(EventError, match="'r'"):
        decode(orjson.dumps(body_of(SAMPLE) | {"r": rule}))


# The record modules of the last releases that wrote minors 1 and 2 (before issue 19's steps
# 2 and 3), as committed: the readers older flushers run, and what each cannot see.
OLDER_READERS = {1: ("066ea68", ("country", "rule")), 2: ("a0d0b39", ("rule",))}


@pytest.mark.parametrize("minor", sorted(OLDER_READERS))
def test_an_older_flusher_reads_a_record_of_this_minor(
    monkeypatch: pytest.MonkeyPatch, minor: int
) -> None:
    """The other direction, with the older reader's own code (read from git history): it
    reads this minor's record as the click without the fields of later minors."""
    release, unseen = OLDER_READERS[minor]
    try:
        source = subprocess.run(
            ["git", "show", f"{release}:app/clicks/record.py"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here (an image or an archive of the tree)")
    older = types.ModuleType(f"record_minor_{minor}")
    monkeypatch.setitem(sys.modules, older.__name__, older)  # dataclasses look it up
    exec(compile(source, f"{older.__name__}.py", "exec"), older.__dict__)
    assert older.MINOR == minor
    read = vars_of(older.decode(encode(SAMPLE)))
    expected = vars_of(SAMPLE) | dict.fromkeys(unseen)
    assert read == {name: value for name, value in expected.items() if name in read}
    assert all(expected[name] is None for name in expected if name not in read)


def vars_of(click: object) -> dict[str, Any]:
    """A click's fields by name, whichever module's ``Click`` it is."""
    return {name: getattr(click, name) for name in click.__slots__}  # type: ignore[attr-defined]


KNOWN_KEYS = {"v", "mv", *body_of(SAMPLE)}
extra_fields = st.dictionaries(
    st.text(max_size=8).filter(lambda key: key not in KNOWN_KEYS), json_values, max_size=5
)


@given(clicks, st.integers(min_value=0, max_value=2**31), extra_fields)
def test_round_trip_through_any_minor_with_extra_fields(
    click: Click, minor: int, extra: dict[str, Any]
) -> None:
    body = extra | body_of(click) | {"mv": minor}
    assert decode(orjson.dumps(body)) == click


@given(clicks, st.integers(min_value=2, max_value=2**63 - 1), extra_fields)
def test_any_other_major_is_parked(click: Click, major: int, extra: dict[str, Any]) -> None:
    with pytest.raises(UnknownVersion):
        decode(orjson.dumps(extra | body_of(click) | {"v": major}))


OPTIONAL = {"af": "af", "cn": "cn", "cv": "cv", "dp": "dp", "ip": "ip", "ua": "user_agent"}
OPTIONAL |= {"ref": "referer", "lang": "accept_language", "ipk": "ip_key", "cc": "country"}
OPTIONAL |= {"r": "rule"}


@pytest.mark.parametrize("field", sorted(set(body_of(SAMPLE)) - {"v", "mv"} - set(OPTIONAL)))
def test_rejects_a_missing_required_field(field: str) -> None:
    body = body_of(SAMPLE)
    del body[field]
    with pytest.raises(EventError, match=repr(field)):
        decode(orjson.dumps(body))


@pytest.mark.parametrize("field", sorted(OPTIONAL))
def test_a_missing_optional_field_reads_as_none(field: str) -> None:
    body = body_of(SAMPLE)
    del body[field]
    assert getattr(decode(orjson.dumps(body)), OPTIONAL[field]) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", None),
        ("id", 5),
        ("t", 1.5),
        ("t", "1717171717000001"),
        ("t", True),
        ("l", False),
        ("p", None),
        ("f", True),
        ("sn", 1),
        ("sn", "true"),
        ("af", 12),
        ("ua", ["Mozilla"]),
        ("m", None),
        ("s", {"id": "s-1"}),
        ("ipk", 7),
        ("ipk", ["0f"]),
    ],
)
def test_rejects_a_wrong_type(field: str, value: object) -> None:
    body = body_of(SAMPLE) | {field: value}
    with pytest.raises(EventError, match=repr(field)):
        decode(orjson.dumps(body))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_are_rejected(raw: bytes) -> None:
    assert_decodes_or_rejects(raw)


@given(json_values)
def test_arbitrary_json_decodes_or_is_rejected(value: object) -> None:
    assert_decodes_or_rejects(orjson.dumps(value))


@given(clicks, st.sampled_from(sorted(body_of(SAMPLE))), json_values)
def test_one_field_replaced_decodes_or_is_rejected(click: Click, field: str, value: Any) -> None:
    body = body_of(click) | {field: value}
    assert_decodes_or_rejects(orjson.dumps(body))


@given(clicks, st.binary(min_size=1, max_size=8))
def test_truncated_or_padded_payloads_are_rejected(click: Click, junk: bytes) -> None:
    raw = encode(click)
    with pytest.raises(EventError):
        decode(raw[: len(raw) // 2])
    with pytest.raises(EventError):
        decode(raw + b"}" + junk)


def test_encode_writes_every_field_of_the_contract() -> None:
    from app.clicks.record import _FIELDS

    assert set(body_of(SAMPLE)) == {"v", "mv", *_FIELDS}
