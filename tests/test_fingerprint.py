"""Contract section 3, "Fingerprint": which retries count as the same request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.client import encode_multipart

from idempotency import idempotent
from idempotency.fingerprint import request_fingerprint
from idempotency.models import IdempotencyRecord
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

    with pytest.raises(ImproperlyConfigured, match="read as a stream"):
        view(request)
    assert not IdempotencyRecord.objects.exists()
