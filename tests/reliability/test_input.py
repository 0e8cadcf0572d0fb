"""Hostile and odd input, property-based: whatever arrives, the answer is a
contract answer and the view runs at most once per (scope, key, fingerprint).

Requests go through Django's whole handler (test client, middleware, URL
resolver) to views that never fail by themselves (``robust_view`` and its DRF
twin neither read the body nor raise), so every 500 and every non-contract
answer is the package's. Hypothesis generates keys (any text, raw latin-1
header bytes as a WSGI server decodes them), methods and bodies; each example
sends its request twice, the second time as a client's retry.

``IDEMPOTENCY_RELIABILITY_LONG=1`` runs many more examples with a random seed;
by default the examples are few and derandomized, so CI runs are repeatable.
"""

from __future__ import annotations

import json
import os
import re
import string
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import got_request_exception
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

LONG = os.environ.get("IDEMPOTENCY_RELIABILITY_LONG") == "1"
EXAMPLES = 3000 if LONG else 150
PROPERTY = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,  # nothing written into the working tree
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # tables are emptied per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

PACKAGE = Path(__file__).resolve().parents[2] / "idempotency"
PROJECT_DIRS = (str(PACKAGE), str(PACKAGE.parent / "tests"))
ROBUST_VIEWS = ("/robust/", "/robust-api/")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
CONTRACT_PROBLEMS = {400, 409, 410, 413, 422, 503}
PROBLEM_FIELDS = {"type", "title", "status", "detail"}
LIMIT = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's default, 2.5 MB

# RFC 8941 section 3.3.3, written independently of idempotency.keys.
SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')


def expected_key(raw: str) -> str | None:
    """The key a header value carries per the contract, or None (400)."""
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        match = SF_STRING.fullmatch(value)
        if match is None:
            return None
        value = re.sub(r'\\(["\\])', r"\1", match.group(1))
    elif "," in value:
        return None  # a list, or the header sent twice
    if not value or len(value) > 255 or not all(" " <= c <= "~" for c in value):
        return None
    return value


def quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Strategies

printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
near_keys = st.one_of(
    printable,
    printable.map(quoted),
    printable.map(lambda k: f" \t{k} "),
    printable.map(str.upper),
    printable.map(lambda k: k + " "),
    st.sampled_from(['"', '""', '"""', '"a\\"', '"\\x"', "\\", '"a"b"', "'a'"]),
)
any_keys = st.one_of(
    near_keys,
    st.text(max_size=60),  # any Unicode, controls and non-ASCII included
    st.text(  # lone surrogates too, which only an in-process client can send
        alphabet=st.one_of(
            st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
        ),
        max_size=20,
    ),
    st.text(alphabet="\x00\x01\x7f\n\r\t \"\\'", max_size=10),
    st.integers(250, 260).map(lambda n: "k" * n),
    st.sampled_from([10_000, 100_000]).map(lambda n: "k" * n),
)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def multipart(fields: dict[str, Any], boundary: str = BOUNDARY) -> bytes:
    return encode_multipart(boundary, fields)


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
bodies = st.one_of(
    st.tuples(st.just(JSON), st.just(b"")),
    st.tuples(st.sampled_from([JSON, "text/plain", "", FORM]), st.binary(max_size=200)),
    st.tuples(
        st.sampled_from([JSON, "application/merge-patch+json", "application/json; charset=utf-16"]),
        st.sampled_from(
            [
                b"\xff\xfe\xfa",  # invalid UTF-8
                b'{"a": "\xc3\x28"}',
                b'{"amount": 1, "amount": 2}',  # duplicate keys
                b"[" * 10_000 + b"]" * 10_000,  # deep nesting
                nested(10_000),
                nested(100_000),
                b'{"a": NaN, "b": Infinity, "c": -Infinity}',
                b'{"big": ' + b"9" * 5000 + b"}",  # over Python's int digit limit
                b'{"big": 1e400, "small": 1e-400}',
                b'"just a string"',
                b"null",
                b'{"a": "\\ud800"}',  # an escaped lone surrogate
            ]
        ),
    ),
    st.tuples(
        st.sampled_from([JSON, "text/plain", FORM]),
        st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1, 2 * LIMIT]).map(lambda n: b"x" * n),
    ),
    st.tuples(
        st.sampled_from(
            [
                MULTIPART_CONTENT,
                "multipart/form-data",  # no boundary
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=\u00e9",
                "multipart/form-data; boundary=" + "b" * 500,
            ]
        ),
        st.one_of(
            st.binary(max_size=200),
            st.just(b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data\r\n\r\nx"),
            st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=4).map(
                multipart
            ),
        ),
    ),
    st.tuples(
        st.just(MULTIPART_CONTENT),
        st.sampled_from([LIMIT - 1000, LIMIT + 1000]).map(lambda n: multipart({"f": "y" * n})),
    ),
)

methods = st.one_of(
    st.sampled_from(
        ["GET", "HEAD", "OPTIONS", "TRACE", *UNSAFE, "post", "Delete", "PROPFIND", "M-SEARCH"]
    ),
    st.text(alphabet=string.ascii_letters + "-_", min_size=1, max_size=12),
)


# What may never happen


@pytest.fixture
def package_faults() -> Iterator[list[str]]:
    """Exceptions that escaped into Django's handler with the package's own
    code as their innermost project frame; the test client is told not to
    re-raise, so this is how a 500 of ours is caught and located."""
    faults: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        assert error is not None
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if frame.filename.startswith(PROJECT_DIRS)
        ]
        if frames and frames[-1].filename.startswith(str(PACKAGE)):
            faults.append("".join(traceback.format_exception(error)))

    got_request_exception.connect(receiver)
    yield faults
    got_request_exception.disconnect(receiver)


@pytest.fixture
def hostile_client() -> Client:
    return Client(raise_request_exception=False)


def fresh() -> None:
    """Each example starts from empty tables (the test's transaction spans
    every example)."""
    IdempotencyRecord.objects.all().delete()
    Charge.objects.all().delete()


def problem_of(response: Any) -> dict[str, Any] | None:
    if response.get("Content-Type") != "application/problem+json":
        return None
    problem: dict[str, Any] = json.loads(response.content)
    assert set(problem) == PROBLEM_FIELDS, problem
    assert problem["status"] == response.status_code
    assert all(
        isinstance(problem[name], str) and problem[name] for name in PROBLEM_FIELDS - {"status"}
    )
    return problem


def assert_contract_answer(response: Any, faults: list[str], what: str) -> str:
    """'view', 'replay' or a problem slug; anything else fails the example."""
    assert not faults, f"{what}: an exception escaped from idempotency:\n{faults[0]}"
    assert response.status_code != 500, f"{what}: 500 {response.content[:300]!r}"
    problem = problem_of(response)
    if problem is not None:
        assert response.status_code in CONTRACT_PROBLEMS, (what, problem)
        slug: str = problem["type"].rsplit(":", 1)[1]
        return slug
    # 200 and 405: DRF's own OPTIONS metadata and "method not allowed".
    assert response.status_code in (200, 201, 405), (
        what,
        response.status_code,
        response.content[:300],
    )
    if response.get("Idempotent-Replayed") == "true":
        return "replay"
    return "view" if response.status_code == 201 else "drf"


def send(client: Any, method: str, path: str, body: bytes, content_type: str, **extra: Any) -> Any:
    return client.generic(method, path, body, content_type=content_type, **extra)


def assert_once_per_key(
    client: Any, faults: list[str], method: str, path: str, body: bytes, content_type: str,
    **extra: Any,
) -> tuple[str, str]:  # fmt: skip
    """Send a request and its retry; check the view ran at most once."""
    what = f"{method} {path} {content_type!r} body[{len(body)}] {extra}"[:400]
    first = send(client, method, path, body, content_type, **extra)
    first_kind = assert_contract_answer(first, faults, what)
    charges = Charge.objects.count()
    assert charges == (1 if first_kind == "view" else 0), (what, first_kind)
    second = send(client, method, path, body, content_type, **extra)
    second_kind = assert_contract_answer(second, faults, what + " (retry)")
    if first_kind == "view" and IdempotencyRecord.objects.exists():
        assert second_kind == "replay", (what, second_kind)
        assert second.status_code == first.status_code
        assert second.content == first.content
        assert Charge.objects.count() == 1, what
    return first_kind, second_kind


# Properties


@PROPERTY
@given(raw=any_keys, path=st.sampled_from(ROBUST_VIEWS))
@example(raw="\u00e9t\u00e9", path="/robust/")
@example(raw="k" * 255, path="/robust/")
@example(raw="k" * 256, path="/robust/")
@example(raw='"' + "k" * 255 + '"', path="/robust/")
@example(raw="\ud800", path="/robust-api/")
def test_any_key_text_is_accepted_exactly_when_the_contract_says(
    hostile_client, package_faults, raw, path
):
    fresh()
    key = expected_key(raw)

    first, second = assert_once_per_key(
        hostile_client, package_faults, "POST", path, b'{"amount": 1}', JSON,
        headers={"Idempotency-Key": raw},
    )  # fmt: skip

    if key is None:
        assert (first, second) == ("key-invalid", "key-invalid"), repr(raw)
        assert not IdempotencyRecord.objects.exists()
    else:
        assert (first, second) == ("view", "replay"), repr(raw)
        assert IdempotencyRecord.objects.get().key == digest(key)


@PROPERTY
@given(raw=st.binary(max_size=300), path=st.sampled_from(ROBUST_VIEWS))
@example(raw=b"caf\xe9", path="/robust/")
@example(raw=b"\xc3\xa9", path="/robust/")
@example(raw=b"ok\x00", path="/robust/")
@example(raw=b' \t"quoted\\\\" \t', path="/robust/")
def test_raw_header_bytes_decoded_as_latin1_are_accepted_exactly_when_the_contract_says(
    hostile_client, package_faults, raw, path
):
    fresh()
    # PEP 3333: a WSGI server hands header values over as latin-1 decoded str.
    header = raw.decode("latin-1")
    key = expected_key(header)

    first, second = assert_once_per_key(
        hostile_client, package_faults, "POST", path, b'{"amount": 1}', JSON,
        HTTP_IDEMPOTENCY_KEY=header,
    )  # fmt: skip

    if key is None:
        assert (first, second) == ("key-invalid", "key-invalid"), repr(raw)
    else:
        assert (first, second) == ("view", "replay"), repr(raw)
        assert IdempotencyRecord.objects.get().key == digest(key)


@PROPERTY
@given(first_raw=near_keys, second_raw=near_keys)
@example(first_raw="abc", second_raw="ABC")
@example(first_raw="abc", second_raw='"abc "')
@example(first_raw="abc", second_raw=' "abc" ')
@example(first_raw='"a\\\\b"', second_raw="a\\b")
def test_two_header_values_share_a_record_exactly_when_they_carry_the_same_key(
    hostile_client, package_faults, first_raw, second_raw
):
    fresh()
    keys = expected_key(first_raw), expected_key(second_raw)
    answers = []
    for raw in (first_raw, second_raw):
        response = send(
            hostile_client, "POST", "/robust/", b"{}", JSON, headers={"Idempotency-Key": raw}
        )
        answers.append(assert_contract_answer(response, package_faults, repr(raw)))

    expected = ["view" if key is not None else "key-invalid" for key in keys]
    if keys[0] is not None and keys[0] == keys[1]:
        expected[1] = "replay"
    assert answers == expected, (first_raw, second_raw, keys)
    assert Charge.objects.count() == expected.count("view")
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == sorted(
        {digest(key) for key in keys if key is not None}
    )


@PROPERTY
@given(method=methods, path=st.sampled_from(ROBUST_VIEWS), with_key=st.booleans())
def test_any_method_is_guarded_exactly_when_it_is_unsafe(
    hostile_client, package_faults, method, path, with_key
):
    fresh()
    headers = {"Idempotency-Key": "method-key"} if with_key else {}
    normalised = method.upper()

    first, second = assert_once_per_key(
        hostile_client, package_faults, method, path, b'{"amount": 1}', JSON, headers=headers
    )

    if normalised in UNSAFE and with_key:
        assert (first, second) == ("view", "replay")
        record = IdempotencyRecord.objects.get()
        assert (record.key, record.method) == (digest("method-key"), normalised)
    else:
        assert not IdempotencyRecord.objects.exists()
        assert "replay" not in (first, second)
        if path == "/robust/":  # a plain function view answers every method
            assert (first, second) == ("view", "view")
            assert Charge.objects.count() == 2


@PROPERTY
@given(
    method=st.sampled_from(UNSAFE),
    path=st.sampled_from(ROBUST_VIEWS),
    body=bodies,
    key=st.sampled_from([None, "body-key"]),
)
def test_any_body_gets_a_contract_answer_and_runs_the_view_at_most_once(
    hostile_client, package_faults, method, path, body, key
):
    fresh()
    content_type, payload = body
    headers = {"Idempotency-Key": key} if key else {}

    first, second = assert_once_per_key(
        hostile_client, package_faults, method, path, payload, content_type, headers=headers
    )

    if key is None:
        assert (first, second) == ("view", "view")  # passed through, unread
        assert not IdempotencyRecord.objects.exists()
        return
    is_multipart = content_type.startswith("multipart/form-data")
    if first == "request-too-large":
        assert len(payload) > LIMIT
        assert second == first
    elif first == "body-malformed":
        assert is_multipart
        assert second == first
    else:
        assert (first, second) == ("view", "replay"), (content_type, payload[:100])
        # Django refuses to read larger bodies, so the fingerprint cannot see
        # them; only a multipart POST's files are streamed past the limit.
        assert len(payload) <= LIMIT or (is_multipart and method == "POST")


def test_a_different_boundary_for_the_same_fields_replays(hostile_client, package_faults):
    fields = {"amount": "5", "note": "caf\u00e9"}
    first = send(
        hostile_client, "POST", "/robust/", multipart(fields, "one"),
        "multipart/form-data; boundary=one", headers={"Idempotency-Key": "mp"},
    )  # fmt: skip
    second = send(
        hostile_client, "POST", "/robust/", multipart(fields, "another-boundary"),
        "multipart/form-data; boundary=another-boundary", headers={"Idempotency-Key": "mp"},
    )  # fmt: skip

    assert assert_contract_answer(first, package_faults, "first") == "view"
    assert assert_contract_answer(second, package_faults, "second") == "replay"
    assert Charge.objects.count() == 1


# Bodies with more multipart fields or files than Django accepts
# (DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000, DATA_UPLOAD_MAX_NUMBER_FILES = 100):
# kept out of the ``bodies`` strategy above, which they would fail.

TOO_MANY = {
    "fields": lambda: multipart({f"f{i}": "v" for i in range(1001)}),
    "files": lambda: multipart({f"u{i}": SimpleUploadedFile(f"{i}.txt", b"x") for i in range(101)}),
}


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("too_many", sorted(TOO_MANY))
def test_too_many_multipart_fields_or_files_is_a_problem_and_the_view_does_not_run(
    hostile_client, package_faults, method, too_many
):
    response = send(
        hostile_client, method, "/robust/", TOO_MANY[too_many](), MULTIPART_CONTENT,
        headers={"Idempotency-Key": "too-many"},
    )  # fmt: skip

    assert Charge.objects.count() == 0
    assert not package_faults
    assert problem_of(response) is not None
    assert response.status_code == 413
