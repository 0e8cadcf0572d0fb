"""Review 3 findings on ``@idempotent_function`` (contract section 7): each test
asserts the correct behaviour and fails on the code it was written against."""

from __future__ import annotations

import pytest

from idempotency import KeyReusedError, idempotent_function

pytestmark = pytest.mark.django_db

runs: list[object] = []


@idempotent_function(key="key")
def echo(key, value):
    runs.append(value)
    return {"seen": repr(value)}


@pytest.fixture(autouse=True)
def fresh_runs():
    runs.clear()


@pytest.mark.parametrize(
    "first, second",
    [
        ({1: "a"}, {"1": "a"}),
        ({True: "a"}, {"true": "a"}),
        ({None: "a"}, {"null": "a"}),
        ({1.5: "a"}, {"1.5": "a"}),
        ({1, 2}, [1, 2]),
        (frozenset({1}), [1]),
        ({"\x00Decimal": "1"}, __import__("decimal").Decimal("1")),
    ],
    ids=[
        "int-key",
        "bool-key",
        "none-key",
        "float-key",
        "set-vs-list",
        "frozenset-vs-list",
        "tag-forgery",
    ],
)
def test_arguments_that_differ_in_type_do_not_share_a_fingerprint(first, second):
    # Same key, other arguments: KeyReusedError, not the first call's value replayed.
    echo("k", first)
    with pytest.raises(KeyReusedError):
        echo("k", second)
    assert runs == [first]


@idempotent_function(key="key")
def big(key, size):
    return "x" * size


def test_an_invalid_key_is_not_echoed_in_the_exception():
    # Keys are secrets (contract): the message names the type, not the value.
    with pytest.raises(ValueError) as info:
        echo(b"sk_live_secret", 1)
    assert "sk_live_secret" not in str(info.value)


@idempotent_function(key="key", fingerprint=lambda key, value: value)
def custom(key, value):
    runs.append(value)
    return value


def test_a_fingerprint_callable_that_returns_no_str_fails_loudly_before_running():
    # str() of a dict depends on its insertion order: a retry with the same
    # arguments built in another order raised KeyReusedError instead.
    with pytest.raises(TypeError, match="str"):
        custom("c", {"a": 1, "b": 2})
    assert runs == []
