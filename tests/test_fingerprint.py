"""Contract section 3, "Fingerprint": which retries count as the same request."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.test import RequestFactory
from django.test.client import encode_multipart
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from idempotency import idempotent
from idempotency.canonical import tagged
from idempotency.fingerprint import (
    CANONICAL_JSON_LIMIT,
    FingerprintError,
    compute_fingerprint,
    request_fingerprint,
)
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from idempotency.problems import BodyMalformed, RequestTooLarge
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

KEY = {"Idempotency-Key": "key-1"}
fingerprint_calls: list[str] = []


def fingerprint_without_timestamp(request: Any) -> str:
    """A FINGERPRINT hook for clients that stamp every attempt."""
    body = {k: v for k, v in json.loads(request.body).items() if k != "timestamp"}
    text = json.dumps([request.method, request.get_full_path(), body], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def long_fingerprint(request: Any) -> str:
    return "long:" + request.method + request.get_full_path() + request.body.decode() * 20


def counting_fingerprint(request: Any) -> str:
    fingerprint_calls.append(request.get_full_path())
    return request_fingerprint(request)


def raw_post(client: Any, body: str | bytes, content_type: str, path: str = "/plain/") -> Any:
    return client.post(path, body, content_type=content_type, headers=KEY)


# JSON


def test_json_bodies_that_differ_only_in_key_order_and_white_space_match(client: Any) -> None:
    assert raw_post(client, '{"amount": 5, "label": "x"}', "application/json").status_code == 201

    retry = raw_post(client, '{\n  "label":"x",\n  "amount":5\n}', "application/json")

    assert retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_nested_json_is_canonicalised(client: Any) -> None:
    first = '{"amount": 5, "meta": {"b": [1, {"y": 2, "x": 1}], "a": null}}'
    again = '{"meta":{"a":null,"b":[1,{"x":1,"y":2}]},"amount":5}'
    assert raw_post(client, first, "application/json").status_code == 201

    assert raw_post(client, again, "application/json")["Idempotent-Replayed"] == "true"


def test_json_arrays_keep_their_order(client: Any) -> None:
    assert raw_post(client, '{"amount": 5, "items": [1, 2]}', "application/json").status_code == 201

    retry = raw_post(client, '{"amount": 5, "items": [2, 1]}', "application/json")

    assert_problem(retry, 422, "key-reused")


def test_json_media_types_with_a_suffix_are_canonicalised() -> None:
    factory = RequestFactory()
    first = factory.post("/x/", '{"a": 1, "b": 2}', content_type="application/merge-patch+json")
    again = factory.post("/x/", '{"b":2,"a":1}', content_type="application/merge-patch+json")

    assert request_fingerprint(first) == request_fingerprint(again)


def test_invalid_json_is_hashed_as_sent() -> None:
    factory = RequestFactory()
    first = factory.post("/x/", "{not json", content_type="application/json")
    again = factory.post("/x/", "{not  json", content_type="application/json")

    assert request_fingerprint(first) != request_fingerprint(again)
    assert len(request_fingerprint(first)) == 64


def test_non_json_bodies_are_compared_byte_for_byte() -> None:
    factory = RequestFactory()
    first = factory.post("/x/", '{"a": 1, "b": 2}', content_type="text/plain")
    again = factory.post("/x/", '{"b": 2, "a": 1}', content_type="text/plain")

    assert request_fingerprint(first) != request_fingerprint(again)


def test_content_type_is_part_of_the_fingerprint() -> None:
    factory = RequestFactory()
    as_json = factory.post("/x/", '{"a": 1}', content_type="application/json")
    as_text = factory.post("/x/", '{"a": 1}', content_type="text/plain")

    assert request_fingerprint(as_json) != request_fingerprint(as_text)


# Multipart


def multipart(boundary: str, content: bytes = b"hello", name: str = "a.txt") -> tuple[bytes, str]:
    data = {"amount": "5", "note": "n", "file": SimpleUploadedFile(name, content)}
    return encode_multipart(boundary, data), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("method", ["post", "put"])
def test_multipart_bodies_with_different_boundaries_match(client: Any, method: str) -> None:
    body, content_type = multipart("BoundaryOne")
    first = getattr(client, method)("/plain/", body, content_type=content_type, headers=KEY)
    assert first.status_code == 201

    body, content_type = multipart("AnotherBoundary2")
    retry = getattr(client, method)("/plain/", body, content_type=content_type, headers=KEY)

    assert retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [{"content": b"goodbye"}, {"name": "b.txt"}],
    ids=["file-content", "file-name"],
)
@pytest.mark.parametrize("method", ["post", "put"])
def test_multipart_bodies_with_another_file_differ(
    client: Any, method: str, change: dict[str, Any]
) -> None:
    body, content_type = multipart("BoundaryOne")
    first = getattr(client, method)("/plain/", body, content_type=content_type, headers=KEY)
    assert first.status_code == 201

    body, content_type = multipart("BoundaryOne", **change)
    retry = getattr(client, method)("/plain/", body, content_type=content_type, headers=KEY)

    assert_problem(retry, 422, "key-reused")
    assert Charge.objects.count() == 1


def test_multipart_fields_are_part_of_the_fingerprint(client: Any) -> None:
    assert client.post("/plain/", {"amount": "5"}, headers=KEY).status_code == 201

    assert_problem(client.post("/plain/", {"amount": "6"}, headers=KEY), 422, "key-reused")


def test_view_reads_uploaded_file_and_fields_after_the_fingerprint(client: Any) -> None:
    body, content_type = multipart("BoundaryOne", content=b"file body")

    response = client.post("/echo/", body, content_type=content_type, headers=KEY)

    assert response.status_code == 201
    assert response.json() == {
        "fields": {"amount": "5", "note": "n"},
        "files": {"file": "file body"},
    }


@pytest.mark.parametrize("method", ["post", "put"])
def test_drf_view_reads_the_json_body_after_the_fingerprint(client: Any, method: str) -> None:
    response = send(client, "/echo/", {"amount": 5, "label": "x"}, method=method)

    assert response.status_code == 201
    assert response.json()["fields"] == {"amount": 5, "label": "x"}


def test_body_consumed_by_drf_before_the_view_is_fingerprinted_from_parsed_data(
    client: Any,
) -> None:
    # ReadsDataPermission reads request.data first, so the raw body is gone.
    assert send(client, "/reads-data/", {"amount": 5, "label": "x"}).status_code == 201

    replay = send(client, "/reads-data/", {"label": "x", "amount": 5})
    assert replay["Idempotent-Replayed"] == "true"
    assert_problem(send(client, "/reads-data/", {"amount": 6}), 422, "key-reused")
    assert Charge.objects.count() == 1


# The FINGERPRINT setting


@pytest.mark.parametrize(
    "hook",
    ["tests.test_fingerprint.fingerprint_without_timestamp", fingerprint_without_timestamp],
    ids=["dotted-path", "callable"],
)
def test_custom_fingerprint_is_used(client: Any, settings: Any, hook: Any) -> None:
    settings.IDEMPOTENCY = {"FINGERPRINT": hook}
    assert send(client, body={"amount": 5, "timestamp": 1}).status_code == 201

    retry = send(client, body={"amount": 5, "timestamp": 2})

    assert retry["Idempotent-Replayed"] == "true"
    assert_problem(send(client, body={"amount": 6, "timestamp": 3}), 422, "key-reused")
    assert Charge.objects.count() == 1


def raising_fingerprint(request: Any) -> str:
    raise KeyError("timestamp")


@pytest.mark.parametrize("path", ["/plain/", "/viewset/"], ids=["django", "drf"])
@pytest.mark.parametrize(
    "hook",
    ["tests.test_fingerprint.raising_fingerprint", raising_fingerprint],
    ids=["dotted-path", "callable"],
)
def test_a_fingerprint_setting_that_raises_is_500_misconfigured_runs_no_view_and_stores_nothing(
    client: Any, settings: Any, caplog: Any, hook: Any, path: str
) -> None:
    settings.IDEMPOTENCY = {"FINGERPRINT": hook}

    response = send(client, path, key="fingerprint-fails")

    assert_problem(response, 500, "misconfigured")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()
    [record] = [r for r in caplog.records if r.name == "idempotency"]
    assert "FINGERPRINT failed" in record.getMessage() and record.levelname == "ERROR"
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_default_fingerprint_tells_volatile_fields_apart(client: Any) -> None:
    assert send(client, body={"amount": 5, "timestamp": 1}).status_code == 201

    assert_problem(send(client, body={"amount": 5, "timestamp": 2}), 422, "key-reused")


def test_custom_fingerprint_longer_than_the_column_still_matches(
    client: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY = {"FINGERPRINT": long_fingerprint}
    assert send(client).status_code == 201

    assert send(client)["Idempotent-Replayed"] == "true"

    assert len(IdempotencyRecord.objects.get().fingerprint) <= 64
    assert_problem(send(client, body={"amount": 6}), 422, "key-reused")


def test_fingerprint_is_computed_once_before_the_view_runs(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"FINGERPRINT": counting_fingerprint}
    fingerprint_calls.clear()

    response = send(client, body={"amount": 9})

    assert fingerprint_calls == ["/plain/"]
    assert response.json()["amount"] == 9  # the view read the body after us
    assert Charge.objects.get().amount == 9


def test_default_fingerprint_is_a_sha256_hex_digest() -> None:
    request = RequestFactory().post("/x/", '{"a": 1}', content_type="application/json")

    fingerprint = request_fingerprint(request)

    assert len(fingerprint) == 64
    assert set(fingerprint) <= set("0123456789abcdef")


@pytest.mark.django_db
def test_a_body_stream_read_before_the_decorator_is_refused_rather_than_hashed_as_empty(rf):
    # Hashing the unreadable body as "nothing" would let two different
    # requests share a fingerprint and one receive the other's response.
    @idempotent
    def view(request):
        return HttpResponse("ran")

    request = rf.post(
        "/anywhere/", b'{"amount": 1}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    request.read()

    response = view(request)

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert b"misconfigured" in response.content
    assert not IdempotencyRecord.objects.exists()


# JSON values are compared exactly (CONTRACT section 3: numbers as written)


def fingerprint_of(body: str | bytes, content_type: str = "application/json", **extra: Any) -> str:
    return request_fingerprint(
        RequestFactory().post("/x/", body, content_type=content_type, **extra)
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('{"amount": 0.1}', '{"amount": 0.10000000000000001}'),
        ('{"amount": 1e400}', '{"amount": 2e400}'),
        ('{"amount": 9007199254740993.0}', '{"amount": 9007199254740992.0}'),
        ('{"amount": 1}', '{"amount": 1.0}'),
        ('{"amount": 10}', '{"amount": 1e1}'),
        ('{"amount": 0}', '{"amount": -0}'),
        ('{"amount": 1}', '{"amount": "1"}'),
        ('{"amount": 1.5}', '{"amount": "1.5"}'),
        ('{"ok": true}', '{"ok": "true"}'),
        ('{"ok": false}', '{"ok": "false"}'),
        ('{"ok": null}', '{"ok": "null"}'),
        ('{"amount": NaN}', '{"amount": "NaN"}'),
        ("1", '"1"'),
        ('{"amount": 1, "amount": 2}', '{"amount": 2, "amount": 1}'),
        ('{"amount": 1, "amount": 2}', '{"amount": 2}'),
        ('{"\\u0000n": "1"}', "1"),
        ('{"a": {"\\u0000n": "1"}}', '{"a": 1}'),
        ('{"a": {"\\u0000d": [["b", 1], ["b", 2]]}}', '{"a": {"b": 1, "b": 2}}'),
    ],
)
def test_json_values_the_view_can_tell_apart_have_different_fingerprints(
    first: str, second: str
) -> None:
    assert fingerprint_of(first) != fingerprint_of(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('{"label": "\\u00e9"}', '{"label": "é"}'),
        ('{"a": 1, "b": 2, "a": 3}', '{"b": 2, "a": 1, "a": 3}'),
        ('{"\\u0000n": 1, "x": 2}', '{"x":2,"\\u0000n":1}'),
        ("[1.50, 2e3, -0]", " [ 1.50 ,\n 2e3 , -0 ] "),
    ],
)
def test_json_spelt_another_way_has_the_same_fingerprint(first: str, second: str) -> None:
    assert fingerprint_of(first) == fingerprint_of(second.encode())


def test_a_retry_with_a_number_written_differently_is_another_request(client: Any) -> None:
    assert raw_post(client, '{"amount": 5, "rate": 0.1}', "application/json").status_code == 201

    retry = raw_post(client, '{"amount": 5, "rate": 0.10000000000000001}', "application/json")

    assert_problem(retry, 422, "key-reused")
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_json_nested_too_deep_to_parse_is_hashed_as_sent(depth: int) -> None:
    deep = "[" * depth + "]" * depth

    fingerprint = fingerprint_of(deep)

    assert len(fingerprint) == 64
    assert fingerprint == fingerprint_of(deep)
    assert fingerprint != fingerprint_of("[" * depth + "1" + "]" * depth)


# Hypothesis: JSON re-serialised matches, JSON that means something else does not.
# A value is a tree of ("num", text) | ("str", s) | ("lit", "true"|"false"|"null")
# | ("arr", [values]) | ("obj", [(key, value)]), numbers kept as their text.

NUMBER_TEXTS = st.sampled_from(
    ["0", "-0", "1", "1.0", "10", "1e1", "1E1", "0.1", "0.10000000000000001", "1e400", "2e400"]
) | st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
TEXTS = st.sampled_from(["1", "1.0", "true", "null", "é", "\x00n", "\x00d", ""]) | st.text(
    max_size=4
)
KEYS = st.sampled_from(["a", "b", "\x00n", "\x00d", "\x00", ""]) | st.text(max_size=3)
LEAVES = (
    NUMBER_TEXTS.map(lambda text: ("num", text))
    | TEXTS.map(lambda text: ("str", text))
    | st.sampled_from([("lit", "true"), ("lit", "false"), ("lit", "null")])
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: ("arr", items))
        | st.lists(st.tuples(KEYS, children), max_size=4).map(lambda pairs: ("obj", pairs))
    ),
    max_leaves=12,
)
PROPERTY = hypothesis_settings(max_examples=300, deadline=None, derandomize=True, database=None)


def meaning(value: Any) -> Any:
    """What a view can see: objects' keys in any order, a repeated key's
    values in their order, numbers as written."""
    kind, content = value
    if kind == "arr":
        return ("arr", tuple(meaning(item) for item in content))
    if kind == "obj":
        pairs = sorted(content, key=lambda pair: pair[0])  # stable: repeats keep their order
        return ("obj", tuple((key, meaning(item)) for key, item in pairs))
    return value


def serialise(value: Any, shuffle: random.Random | None = None) -> str:
    """The JSON text of ``value``; with ``shuffle``, keys reordered (a repeated
    key's values kept in their order), white space added, non-ASCII escaped."""
    kind, content = value
    space = " \n " if shuffle else ""
    if kind in ("num", "lit"):
        return str(content)
    if kind == "str":
        return json.dumps(content, ensure_ascii=shuffle is not None)
    if kind == "arr":
        return "[" + f",{space}".join(serialise(item, shuffle) for item in content) + "]"
    pairs = list(content)
    if shuffle:
        keys = list(dict.fromkeys(key for key, _ in pairs))
        shuffle.shuffle(keys)
        pairs = [pair for key in keys for pair in content if pair[0] == key]
    members = (f"{json.dumps(key)}{space}:{space}{serialise(item, shuffle)}" for key, item in pairs)
    return "{" + space + f",{space}".join(members) + space + "}"


@PROPERTY
@given(value=VALUES, shuffle=st.randoms(use_true_random=False))
def test_property_json_serialised_another_way_has_the_same_fingerprint(
    value: Any, shuffle: random.Random
) -> None:
    compact, spelt_otherwise = serialise(value), serialise(value, shuffle)

    assert fingerprint_of(compact) == fingerprint_of(spelt_otherwise.encode())


@PROPERTY
@given(first=VALUES, second=VALUES, shuffle=st.randoms(use_true_random=False))
def test_property_json_values_share_a_fingerprint_exactly_when_they_mean_the_same(
    first: Any, second: Any, shuffle: random.Random
) -> None:
    same = meaning(first) == meaning(second)

    assert (fingerprint_of(serialise(first)) == fingerprint_of(serialise(second, shuffle))) is same


# JSON bodies above CANONICAL_JSON_LIMIT are hashed as sent


def padded_json(size: int, *, amount_first: bool) -> str:
    pad = "x" * (size - len('{"amount":5,"pad":""}'))
    body = f'{{"amount":5,"pad":"{pad}"}}' if amount_first else f'{{"pad":"{pad}","amount":5}}'
    assert len(body) == size
    return body


def test_json_bodies_up_to_the_limit_are_canonicalised() -> None:
    size = CANONICAL_JSON_LIMIT

    assert fingerprint_of(padded_json(size, amount_first=True)) == fingerprint_of(
        padded_json(size, amount_first=False)
    )


def test_json_bodies_over_the_limit_are_hashed_as_sent() -> None:
    size = CANONICAL_JSON_LIMIT + 1
    body = padded_json(size, amount_first=True)

    assert fingerprint_of(body) == fingerprint_of(body)
    assert fingerprint_of(body) != fingerprint_of(padded_json(size, amount_first=False))


# Form bodies and query strings are hashed as sent (docs/decisions.md)


def test_form_fields_in_another_order_are_another_request() -> None:
    form = "application/x-www-form-urlencoded"

    assert fingerprint_of("a=1&b=2", form) != fingerprint_of("b=2&a=1", form)


def test_query_parameters_in_another_order_are_another_request() -> None:
    factory = RequestFactory()
    first = factory.post("/x/?a=1&b=2", "{}", content_type="application/json")
    again = factory.post("/x/?b=2&a=1", "{}", content_type="application/json")

    assert request_fingerprint(first) != request_fingerprint(again)


# The host


def test_the_same_request_to_another_host_is_another_request(client: Any) -> None:
    body = '{"amount": 5}'
    first = client.post(
        "/plain/", body, content_type="application/json", headers={**KEY, "Host": "a.example.com"}
    )
    assert first.status_code == 201

    same_host = client.post(
        "/plain/", body, content_type="application/json", headers={**KEY, "Host": "a.example.com"}
    )
    other_host = client.post(
        "/plain/", body, content_type="application/json", headers={**KEY, "Host": "b.example.com"}
    )

    assert same_host["Idempotent-Replayed"] == "true"
    assert_problem(other_host, 422, "key-reused")
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("host", ["A.Example.com", "a.example.com:8001", "a.example.com."])
def test_the_host_is_compared_as_django_matches_it_without_port_or_case(host: str) -> None:
    # ALLOWED_HOSTS matching ignores case and the port; so does the
    # fingerprint, so app servers on two ports serve one site.
    def on(host: str) -> str:
        return fingerprint_of('{"amount": 5}', HTTP_HOST=host)

    assert on(host) == on("a.example.com:8000")
    assert on(host) != on("b.example.com:8000")


def test_a_host_django_does_not_allow_is_left_to_django(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["good.example.com"]
    request = RequestFactory().post("/x/", "{}", content_type="application/json", HTTP_HOST="evil")

    with pytest.raises(DisallowedHost):  # Django answers 400
        compute_fingerprint(request, request_fingerprint)


# Files are compared by content on every path, and one multipart request has
# one fingerprint whoever parsed it (Django, DRF or the fingerprint itself)

FORM = "/fingerprint/form/"
READ_FIRST = {"X-Read-Data": "1"}


@pytest.mark.parametrize("read_first", [False, True], ids=["fingerprint-first", "drf-first"])
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_another_file_with_the_same_name_is_another_request(
    client: Any, method: str, read_first: bool
) -> None:
    headers = {**KEY, **(READ_FIRST if read_first else {})}
    body, content_type = multipart("BoundaryOne", content=b"the first file")
    first = getattr(client, method)(FORM, body, content_type=content_type, headers=headers)
    assert first.status_code == 201
    assert first.json()["files"] == {
        "file": ["a.txt", hashlib.sha256(b"the first file").hexdigest()]
    }

    body, content_type = multipart("BoundaryTwo", content=b"another file")
    retry = getattr(client, method)(FORM, body, content_type=content_type, headers=headers)

    assert_problem(retry, 422, "key-reused")
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_a_multipart_request_has_one_fingerprint_whoever_parsed_it(
    client: Any, method: str
) -> None:
    data = {
        "note": ["z", "a"],  # one name, two values: their order is kept
        "amount": "5",
        "file": SimpleUploadedFile("a.txt", b"contents"),
        "attachment": SimpleUploadedFile("b.bin", b"\x00\x01", content_type="image/png"),
    }
    answers = []
    for key, extra in [("ours", {}), ("drfs", READ_FIRST)]:
        data["file"].seek(0)
        data["attachment"].seek(0)
        body = encode_multipart(f"Boundary-{key}", data)
        answers.append(
            getattr(client, method)(
                FORM,
                body,
                content_type=f"multipart/form-data; boundary=Boundary-{key}",
                headers={"Idempotency-Key": key, **extra},
            ).json()
        )

    assert answers[0] == answers[1]  # the view saw the same request
    fingerprints = dict(IdempotencyRecord.objects.values_list("key", "fingerprint"))
    assert fingerprints[digest("ours")] == fingerprints[digest("drfs")]


@pytest.mark.parametrize(
    "filename", ["../../etc/a.txt", "n" * 300 + ".txt", "tab\there.txt", ""], ids=repr
)
def test_file_names_django_cleans_give_one_fingerprint_whoever_parsed_them(
    client: Any, filename: str
) -> None:
    body = (
        '--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nn\r\n'
        f'--B\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\ncontents\r\n--B--\r\n"
    ).encode()
    answers = [
        client.put(
            FORM, body, content_type="multipart/form-data; boundary=B",
            headers={"Idempotency-Key": key, **extra},
        ).json()
        for key, extra in [("ours", {}), ("drfs", READ_FIRST)]
    ]  # fmt: skip

    assert answers[0] == answers[1]
    fingerprints = dict(IdempotencyRecord.objects.values_list("key", "fingerprint"))
    assert fingerprints[digest("ours")] == fingerprints[digest("drfs")]


def test_multipart_values_of_one_name_in_another_order_are_another_request(client: Any) -> None:
    def send_notes(notes: list[str]) -> Any:
        body = encode_multipart("B", {"note": notes})
        return client.put(FORM, body, content_type="multipart/form-data; boundary=B", headers=KEY)

    assert send_notes(["a", "b"]).status_code == 201

    assert_problem(send_notes(["b", "a"]), 422, "key-reused")


@pytest.mark.parametrize("read_first", [False, True], ids=["fingerprint-first", "drf-first"])
@pytest.mark.parametrize("method", ["post", "put"])
def test_a_raw_upload_is_compared_by_content(client: Any, method: str, read_first: bool) -> None:
    # DRF's FileUploadParser: the body is the file; the name is in the path.
    headers = {**KEY, **(READ_FIRST if read_first else {})}
    path = "/fingerprint/upload/photo.png/"
    send_file = getattr(client, method)
    first = send_file(path, b"\x89PNG first", content_type="image/png", headers=headers)
    assert first.status_code == 201
    assert first.json()["files"] == {
        "file": ["photo.png", hashlib.sha256(b"\x89PNG first").hexdigest()]
    }

    assert (
        send_file(path, b"\x89PNG first", content_type="image/png", headers=headers)[
            "Idempotent-Replayed"
        ]
        == "true"
    )
    retry = send_file(path, b"\x89PNG other", content_type="image/png", headers=headers)

    assert_problem(retry, 422, "key-reused")
    assert Charge.objects.count() == 1


# DRF's parsed data, when DRF read the body first, keeps each value's type


def test_a_decimal_and_a_string_parsed_by_drf_first_are_different_requests(client: Any) -> None:
    path = "/fingerprint/decimal/"
    assert raw_post(client, '{"amount": 1.0}', "application/json", path).json() == {"amount": "1.0"}

    assert (
        raw_post(client, '{ "amount":1.0 }', "application/json", path)["Idempotent-Replayed"]
        == "true"
    )
    assert_problem(
        raw_post(client, '{"amount": "1.0"}', "application/json", path), 422, "key-reused"
    )
    assert_problem(
        raw_post(client, '{"amount": 1.00}', "application/json", path), 422, "key-reused"
    )
    assert Charge.objects.count() == 1


def test_form_data_parsed_by_drf_first_is_compared_by_value(client: Any) -> None:
    form = "application/x-www-form-urlencoded"
    headers = {**KEY, **READ_FIRST}
    assert client.post(FORM, "note=a&note=b", content_type=form, headers=headers).status_code == 201

    retry = client.post(FORM, "note=b&note=a", content_type=form, headers=headers)

    assert_problem(retry, 422, "key-reused")


@pytest.mark.parametrize(
    "values",
    [
        [1, 1.0, Decimal("1"), Decimal("1.0"), Decimal("1.00"), "1", True, b"1", ["1"], ("1",)],
        [None, "None", "", [], {}, (), b""],
        [float("nan"), "nan", Decimal("NaN")],
        [{"a": [1, 2]}, {"a": [2, 1]}, {"a": (1, 2)}, [("a", [1, 2])]],
        [QueryDict("a=1&a=2"), QueryDict("a=2&a=1"), {"a": ["1", "2"]}, QueryDict("a=1")],
        [
            date(2026, 1, 1),
            datetime(2026, 1, 1),
            "2026-01-01",
            datetime(2026, 1, 1, tzinfo=timezone.utc),
        ],
        [10**5000, 10**5000 + 1, -(10**5000)],
    ],
)
def test_parsed_values_of_different_types_or_values_are_tagged_apart(values: list[Any]) -> None:
    encoded = [tagged(value) for value in values]

    assert len(set(encoded)) == len(values)


def test_parsed_mappings_are_compared_whatever_their_key_order() -> None:
    assert tagged({"a": 1, "b": [1, {"y": 2, "x": 1}]}) == tagged(
        {"b": [1, {"x": 1, "y": 2}], "a": 1}
    )


def test_parsed_uploads_are_compared_by_name_and_content() -> None:
    def upload(name: str, content: bytes) -> SimpleUploadedFile:
        return SimpleUploadedFile(name, content, content_type="text/plain")

    assert tagged({"f": upload("a.txt", b"x")}) == tagged({"f": upload("a.txt", b"x")})
    assert tagged({"f": upload("a.txt", b"x")}) != tagged({"f": upload("a.txt", b"y")})
    assert tagged({"f": upload("a.txt", b"x")}) != tagged({"f": upload("b.txt", b"x")})


def test_parsed_data_nested_deeper_than_the_recursion_limit_is_tagged() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]

    assert tagged(deep) != tagged([deep])


def test_parsed_data_of_a_type_it_cannot_compare_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot compare exactly"):
        tagged({"a": object()})


# Errors: problems for the request's faults, FingerprintError for the site's


def test_a_malformed_multipart_body_is_answered_without_echoing_the_request(
    client: Any, caplog: Any
) -> None:
    boundary = "secret-boundary-" + "b" * 300  # too long: Django refuses it
    caplog.set_level("DEBUG")

    response = client.post(
        "/plain/", b"--x--", content_type=f"multipart/form-data; boundary={boundary}", headers=KEY
    )

    problem = assert_problem(response, 400, "body-malformed")
    assert problem["detail"] == BodyMalformed.detail
    assert "secret-boundary" not in response.content.decode()
    assert not [r for r in caplog.records if "secret-boundary" in r.getMessage()]
    assert not IdempotencyRecord.objects.exists()


def failing_fingerprint(request: Any) -> str:
    raise ValueError("the body said 4111 1111 1111 1111")


@pytest.mark.parametrize("returned", [None, b"bytes", 42, ""])
def test_a_fingerprint_function_returning_no_str_is_a_fingerprint_error(returned: Any) -> None:
    request = RequestFactory().post("/x/", "{}", content_type="application/json")

    with pytest.raises(FingerprintError, match=r"must return a non-empty str"):
        compute_fingerprint(request, lambda request: returned)


def test_a_fingerprint_function_that_raises_is_a_fingerprint_error_that_quotes_nothing() -> None:
    request = RequestFactory().post("/x/", "{}", content_type="application/json")

    with pytest.raises(FingerprintError) as raised:
        compute_fingerprint(request, failing_fingerprint)

    assert "(tests.test_fingerprint.failing_fingerprint) raised ValueError" in str(raised.value)
    assert "4111" not in str(raised.value)
    assert isinstance(raised.value.__cause__, ValueError)  # for the log


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (
            RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."),
            RequestTooLarge,
        ),
        (TooManyFieldsSent("too many fields"), RequestTooLarge),
        (TooManyFilesSent("too many files"), RequestTooLarge),
        (MultiPartParserError("Invalid boundary in multipart: secret"), BodyMalformed),
    ],
)
def test_django_refusing_the_body_is_a_problem(error: Exception, problem: type) -> None:
    request = RequestFactory().post("/x/", "{}", content_type="application/json")

    def refusing(request: Any) -> str:
        raise error

    with pytest.raises(problem) as raised:
        compute_fingerprint(request, refusing)

    assert "secret" not in raised.value.detail


def test_a_problem_raised_by_a_fingerprint_function_is_left_as_it_is() -> None:
    request = RequestFactory().post("/x/", "{}", content_type="application/json")

    def refusing(request: Any) -> str:
        raise BodyMalformed("This endpoint needs a body.")

    with pytest.raises(BodyMalformed, match="needs a body"):
        compute_fingerprint(request, refusing)


def fingerprint_from_drf_data(request: Any) -> str:
    return hashlib.sha256(json.dumps(request.data, sort_keys=True).encode()).hexdigest()


def test_drf_refusing_the_body_in_a_fingerprint_function_is_drfs_answer(
    client: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY = {"FINGERPRINT": fingerprint_from_drf_data}

    response = raw_post(client, "{not json", "application/json", "/api-function/")

    assert response.status_code == 400  # DRF's ParseError, rendered by DRF
    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0


# Stability: a record written by an earlier release keeps matching its retries


# Fingerprints and key digests of fixed requests as main computed them
# before the fingerprint was made cheaper (issue 10): a faster path that
# changed one byte of what is hashed would turn every retry of a record
# stored before an upgrade into 422.
STABLE_FINGERPRINTS = [
    ("post", "/orders/?b=2&a=1",
     b'{"amount": 1250, "currency": "EUR", "description": "benchmark order"}',
     "application/json", {}, "7e68e98e58cc3ed3771e880599b5f8fa0e4067493140dc898b53bfc6ca7a59b1"),
    ("post", "/x/",
     b'{"a": [1, 1.0, 1e2, -0, true, false, null, NaN, "\\u00e9", "\\ud800"], '
     b'"\\u0000k": {"z": 1, "z": 2}}',
     "application/vnd.api+json", {},
     "ad5c69a8b2bad2e5e2be47902f5fdf7b0cb1627f2f1797980c0f0277a2858753"),
    ("put", "/x/", '\ufeff{"a": 1}'.encode(), "application/json", {},
     "50fceca2e651da3dfebe7b0b6c9f5446d392ed3547a44b87e491e1f4cae592b0"),
    ("patch", "/x/", '{"\u00e9": 2}'.encode("utf-16"), "application/json", {},
     "089a9d0dcdf5c5857195b0d2b9c4e7dd145b0fc9c3d95081c76166bcc06695da"),
    ("post", "/x/", b'{"a": ', "application/json", {},
     "c5d10d0aa449955ac001550e9af2c2f82e27b857f12850a4fe6b8062e16c3f58"),
    ("post", "/x/", b"a=1&b=2", "application/x-www-form-urlencoded", {},
     "61071716adccd6aebe9c2bc6157d6365a3fd89fd07ccae2edfc3c19f908ea92e"),
    ("post", "/x/", b"", "application/json", {"HTTP_HOST": "Tenant.Example.com:8000"},
     "5e306c04962a0f9fc4dc6320ab7cf422b087766f0b5325b389f5c298c5a010ed"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "content_type", "extra", "expected"),
                         STABLE_FINGERPRINTS)  # fmt: skip
def test_the_default_fingerprint_of_a_request_is_what_earlier_releases_computed(
    method: str, path: str, body: bytes, content_type: str, extra: dict[str, str], expected: str
) -> None:
    request = getattr(RequestFactory(), method)(path, body, content_type=content_type, **extra)

    assert request_fingerprint(request) == expected


def test_a_key_digest_is_what_earlier_releases_computed(settings: Any) -> None:
    settings.SECRET_KEY = "tests-only"

    assert digest("key-1") == "c13b307fb5f70c4a5155d145800e9d04f74670183ebf3e91938da0f9092167d7"


def test_the_default_fingerprint_of_a_multipart_request_is_what_earlier_releases_computed() -> None:
    upload = SimpleUploadedFile("a.txt", b"content", "text/plain")
    request = RequestFactory().post("/x/", {"b": ["2", "1"], "a": "x", "f": upload})

    assert request_fingerprint(request) == (
        "388d0a1ee83d1eb814212835264e0e115b170f3efad414954f946254ff616cdb"
    )
