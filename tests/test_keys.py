"""Contract section 3, the key rows: what a valid ``Idempotency-Key`` is."""

from __future__ import annotations

from typing import Any

import pytest

from idempotency.keys import digest, digests, parse_key, shown
from idempotency.models import IdempotencyRecord
from idempotency.problems import KeyInvalid
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces-only"),
        pytest.param("\t", id="tab-only"),
        pytest.param("a" * 256, id="256-chars"),
        pytest.param("a" * 5000, id="5000-chars"),
        pytest.param("a\tb", id="inner-tab"),
        pytest.param("caf\xe9", id="latin-1"),
        pytest.param("\x01abc", id="control-char"),
        pytest.param("ab\x7f", id="delete-char"),
        pytest.param('""', id="empty-quoted"),
        pytest.param('"a\\nb"', id="bad-escape"),
        pytest.param('"a"b"', id="unescaped-quote"),
        pytest.param('"ab\\"', id="lone-backslash"),
        pytest.param('"' + "a" * 256 + '"', id="quoted-256-chars"),
        pytest.param('"caf\xe9"', id="quoted-latin-1"),
    ],
)
def test_invalid_key_is_400_and_the_view_does_not_run(client: Any, key: str) -> None:
    assert_problem(send(client, key=key), 400, "key-invalid")

    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_key_of_the_maximum_length_is_accepted(client: Any) -> None:
    key = "k" * 255

    assert send(client, key=key).status_code == 201

    assert IdempotencyRecord.objects.get().key == digest(key)
    assert send(client, key=key)["Idempotent-Replayed"] == "true"


def test_key_max_length_setting_moves_the_limit(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 10}

    problem = assert_problem(send(client, key="k" * 11), 400, "key-invalid")
    assert "10" in problem["detail"]
    assert send(client, key="k" * 10).status_code == 201
    assert Charge.objects.count() == 1


def test_key_max_length_above_255_accepts_longer_keys_stored_as_a_digest(
    client: Any, settings: Any
) -> None:
    # The store keeps a fixed-length digest, so no column limits the key.
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 1000}
    key = "k" * 1000

    assert send(client, key=key).status_code == 201
    assert send(client, key=key)["Idempotent-Replayed"] == "true"
    assert_problem(send(client, key=key + "k"), 400, "key-invalid")
    assert IdempotencyRecord.objects.get().key == digest(key)
    assert Charge.objects.count() == 1


def test_every_printable_ascii_character_is_accepted(client: Any) -> None:
    # A comma outside a quoted string makes a list; quoted, it is part of the key.
    bare = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '",\\') + " x"
    quoted = '"' + bare + ',\\\\"'

    assert send(client, key=bare).status_code == 201
    assert send(client, key=quoted).status_code == 201

    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {
        digest(bare),
        digest(bare + ",\\"),
    }


def test_quoted_key_is_the_same_key_as_the_bare_one(client: Any) -> None:
    assert send(client, key='"abc"').status_code == 201

    assert send(client, key="abc")["Idempotent-Replayed"] == "true"

    assert IdempotencyRecord.objects.get().key == digest("abc")
    assert Charge.objects.count() == 1


def test_quoted_key_unescapes_quote_and_backslash(client: Any) -> None:
    assert send(client, key='"a\\"b\\\\c"').status_code == 201

    assert IdempotencyRecord.objects.get().key == digest('a"b\\c')
    assert send(client, key='a"b\\c')["Idempotent-Replayed"] == "true"


def test_surrounding_whitespace_is_not_part_of_the_key(client: Any) -> None:
    # RFC 9110 section 5.5: a field value excludes leading and trailing white space.
    assert send(client, key="abc").status_code == 201

    assert send(client, key=" abc\t")["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("abc", "ABC", id="case"),
        pytest.param("abc", '"abc "', id="quoted-trailing-space"),
        pytest.param("a b", "a  b", id="inner-spaces"),
    ],
)
def test_keys_are_compared_exactly(client: Any, first: str, second: str) -> None:
    assert send(client, key=first).status_code == 201

    response = send(client, key=second)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.count() == 2
    assert Charge.objects.count() == 2


def test_parse_key_returns_the_key_a_header_carries() -> None:
    assert parse_key("abc", 255) == "abc"
    assert parse_key('"abc"', 255) == "abc"
    assert parse_key('"a\\"b"', 255) == 'a"b'
    assert parse_key('"abc "', 255) == "abc "


@pytest.mark.parametrize("raw", ["", "x" * 4, '"a\\b"', "\u20ac", "a,b", "a, b", '"a", "b"'])
def test_parse_key_raises_key_invalid(raw: str) -> None:
    with pytest.raises(KeyInvalid):
        parse_key(raw, 3)


# Duplicate headers


@pytest.mark.parametrize("joined", ["abc, abc", "abc,def", 'abc, "def"', '"abc", "def"'])
def test_a_key_list_or_a_header_sent_twice_is_400(client: Any, joined: str) -> None:
    # Servers join repeated headers with ", " (RFC 9110 section 5.3).
    problem = assert_problem(send(client, key=joined), 400, "key-invalid")

    assert "exactly one key" in problem["detail"] or "unescaped quote" in problem["detail"]
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


# The key is kept only as a keyed digest


def test_the_key_is_never_stored_in_full(client: Any) -> None:
    key = "4f7c2e3a-9b1d-4c55-8e0f-2a6b7c8d9e01"

    assert send(client, key=key).status_code == 201

    record = IdempotencyRecord.objects.get()
    assert record.key == digest(key) != key
    assert key not in str(list(IdempotencyRecord.objects.values_list()))
    assert shown(record.key) == record.key[:12]


def test_the_digest_is_keyed_by_the_secret_key(settings: Any) -> None:
    first = digest("abc")
    settings.SECRET_KEY = "another-secret"

    assert digest("abc") != first


def test_a_retry_after_a_secret_key_rotation_still_replays(client: Any, settings: Any) -> None:
    assert send(client, key="rotate-me").status_code == 201
    old = settings.SECRET_KEY

    settings.SECRET_KEY = "the-new-secret"
    settings.SECRET_KEY_FALLBACKS = [old]
    response = send(client, key="rotate-me")

    assert response["Idempotent-Replayed"] == "true"
    assert digests("rotate-me") == (digest("rotate-me"), IdempotencyRecord.objects.get().key)
    assert Charge.objects.count() == 1
    assert_problem(send(client, body={"amount": 6}, key="rotate-me"), 422, "key-reused")
