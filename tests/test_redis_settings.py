"""REDIS_URL and REDIS_CLUSTER as the checks judge them and as the store's client reads them.

Against real servers only: the shared Redis at 127.0.0.1:6379 (read, or
written under a prefix of the test's own), a 3-master Redis Cluster of this
module's own, and a loopback socket that accepts connections and never
answers (a hung Redis).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks.registry import registry
from django.test import Client

from idempotency.stores.redis_connection import connection
from tests.redis_servers import RedisCluster, redis_cluster
from tests.servers import free_port
from tests.stores.conftest import REDIS_URL, redis_store_in
from tests.testapp.models import Charge
from tests.testapp.views import EXECUTIONS

PASSWORD = "p/ss@w:rd"


# The checks of the Redis settings; others (W009 reads whichever Celery app an
# earlier test left current) are not this file's.
REDIS_CHECKS = {"idempotency.E024", "idempotency.E025", "idempotency.E026", "idempotency.E027",
                "idempotency.E028", "idempotency.E031", "idempotency.E032", "idempotency.W008",
                "idempotency.W011"}  # fmt: skip


def idempotency_messages() -> list[Any]:
    return [m for m in registry.run_checks(tags=["idempotency"]) if m.id in REDIS_CHECKS]


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def only(messages: list[Any], check_id: str) -> Any:
    found = [message for message in messages if message.id == check_id]
    assert len(found) == 1, f"expected one {check_id}, got {ids(messages)}"
    return found[0]


@contextlib.contextmanager
def silent_redis() -> Iterator[str]:
    """The URL of a loopback socket that accepts connections (the kernel
    completes them into its backlog) and never answers: a hung Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster(3) as started:
        yield started


def post(client: Client, key: str, **options: Any) -> Any:
    return client.post(
        "/counted/", json.dumps(options), content_type="application/json",
        headers={"Idempotency-Key": key},
    )  # fmt: skip


def problem_slug(response: Any) -> str:
    assert response["Content-Type"] == "application/problem+json"
    return str(json.loads(response.content)["type"]).rsplit(":", 1)[-1]


# 1. No message shows REDIS_URL's password, whatever characters it holds


@pytest.mark.parametrize(
    "url",
    [f"redis://:{PASSWORD}@cache:6379/0", f"redis://admin:{PASSWORD}@cache:notaport/0",
     f"rediss://:{PASSWORD}@@cache/0", f"redis://admin:{PASSWORD}\n@cache:x/0"],
)  # fmt: skip
def test_e024_never_shows_a_password_that_holds_slash_at_or_colon(settings, url):
    settings.IDEMPOTENCY = {"REDIS_URL": url}

    message = only(idempotency_messages(), "idempotency.E024")

    quoted = message.msg.split(": give a URL such as")[0]  # the example after it has a password
    for fragment in ("p/ss", "ss@w", "w:rd", "rd@", "admin"):
        assert fragment not in quoted
    assert "'redis" in quoted and "://***@cache" in quoted


def test_e024_never_shows_a_password_given_in_the_query_string(settings):
    settings.IDEMPOTENCY = {"REDIS_URL": "redis://cache:notaport/0?password=hunter2"}

    message = only(idempotency_messages(), "idempotency.E024")

    assert "hunter2" not in message.msg and "password=***" in message.msg


def test_e031_never_shows_the_password(settings):
    settings.IDEMPOTENCY = {
        "STORE": "redis",
        "REDIS_URL": "redis://:p%2Fss%40w%3Ard@127.0.0.1:6379/0?socket_timeout=abc",
    }

    message = only(idempotency_messages(), "idempotency.E031")

    assert "p%2Fss" not in message.msg and "w%3Ard" not in message.msg
    assert "'redis://***@127.0.0.1:6379/0?socket_timeout=abc'" in message.msg


# 2. The store's client reads bytes, whatever the URL asks; a URL redis-py
#    refuses is E031, and 500 misconfigured at request time


@pytest.mark.parametrize("value", ["true", "false", "1"])
def test_decode_responses_in_the_url_does_not_change_the_stores_replies(value):
    client = connection(f"{REDIS_URL}?decode_responses={value}", False).client

    assert client.echo(b"\xff\xfe") == b"\xff\xfe"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", ["decode_responses=true", "protocol=3"])
def test_a_url_with_reply_options_replays_a_binary_body_byte_for_byte(settings, query):
    """Options that change the shape of the replies (RESP3's types too) do
    not reach the store's client."""
    with redis_store_in(settings, f"{REDIS_URL}?{query}"):
        key, client = uuid.uuid4().hex, Client()
        first = post(client, key, kind="binary")
        again = post(client, key, kind="binary")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content == bytes(range(256)) * 4
    assert EXECUTIONS[key] == 1


@pytest.mark.django_db(transaction=True)
def test_a_cluster_url_with_decode_responses_replays_a_binary_body(settings, cluster):
    with redis_store_in(settings, f"{cluster.url}?decode_responses=yes", cluster=True):
        key, client = uuid.uuid4().hex, Client()
        first = post(client, key, kind="binary")
        again = post(client, key, kind="binary")

    assert again["Idempotent-Replayed"] == "true" and again.content == first.content


@pytest.mark.parametrize(
    ("query", "quoted"),
    [("socket_timeout=abc", "'socket_timeout'"), ("sockettimeout=2", "'sockettimeout'"),
     ("max_connections=many", "'max_connections'")],
)  # fmt: skip
def test_a_query_option_redis_py_refuses_is_e031_with_the_option_named(settings, query, quoted):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": f"{REDIS_URL}?{query}"}

    messages = idempotency_messages()

    message = only(messages, "idempotency.E031")
    assert quoted in message.msg and "correct that part of the URL" in message.msg
    assert ids(messages) == ["idempotency.E031"]  # the server checks do not run on it


def test_a_database_other_than_0_on_a_cluster_is_e031(settings):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:1/2",
                            "REDIS_CLUSTER": True}  # fmt: skip

    assert "only database 0" in only(idempotency_messages(), "idempotency.E031").msg


def test_options_redis_py_knows_are_silent(settings):
    settings.IDEMPOTENCY = {
        "STORE": "redis",
        "REDIS_URL": f"{REDIS_URL}?socket_timeout=2&client_name=payments&health_check_interval=30",
    }

    assert idempotency_messages() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", ["socket_timeout=abc", "sockettimeout=2"])
def test_a_query_option_redis_py_refuses_is_500_misconfigured_and_runs_no_view(
    settings, caplog, query
):
    url = f"redis://:p%2Fss%40w%3Ard@127.0.0.1:6379/0?{query}"
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": url}
    key, charges = uuid.uuid4().hex, Charge.objects.count()

    response = post(Client(), key)

    assert response.status_code == 500 and problem_slug(response) == "misconfigured"
    assert key not in EXECUTIONS and Charge.objects.count() == charges
    assert "E031" in caplog.text and "p%2Fss" not in caplog.text


# 3. REDIS_CLUSTER must say what the Redis at REDIS_URL is


def test_a_cluster_node_without_redis_cluster_is_e032(settings, cluster):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": cluster.url}

    message = only(idempotency_messages(), "idempotency.E032")

    assert "is False" in message.msg and "cluster_enabled:1" in message.msg
    assert "set REDIS_CLUSTER to True" in message.msg


def test_a_cluster_node_with_redis_cluster_is_silent(settings, cluster):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": cluster.url, "REDIS_CLUSTER": True}

    assert idempotency_messages() == []


def test_redis_cluster_against_a_redis_that_is_no_cluster_node_is_e032(settings):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": REDIS_URL, "REDIS_CLUSTER": True}

    message = only(idempotency_messages(), "idempotency.E032")

    assert "is True" in message.msg and "cluster_enabled:0" in message.msg


@pytest.mark.django_db(transaction=True)
def test_a_cluster_node_without_redis_cluster_is_500_misconfigured_for_every_other_slot(
    settings, caplog, cluster
):
    """A key whose slot another master owns gets MOVED: not a Redis that is
    down (503, retry later) but a setting to correct, named in the log."""
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": cluster.url}
    keys = [uuid.uuid4().hex for _ in range(24)]

    statuses = {key: post(Client(), key).status_code for key in keys}

    moved = [key for key in keys if statuses[key] != 201]
    assert moved, "24 keys on one of 3 masters: some must hash elsewhere"
    assert {statuses[key] for key in moved} == {500}
    assert not any(key in EXECUTIONS for key in moved)
    assert "set REDIS_CLUSTER to True" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_redis_cluster_against_a_redis_that_is_no_cluster_node_is_503_not_an_exception(settings):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": REDIS_URL, "REDIS_CLUSTER": True}
    key = uuid.uuid4().hex

    response = post(Client(), key)

    assert response.status_code == 503 and problem_slug(response) == "store-unavailable"
    assert key not in EXECUTIONS


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_cluster_is_503_not_an_exception(settings):
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": url, "REDIS_CLUSTER": True}

    response = post(Client(), uuid.uuid4().hex)

    assert response.status_code == 503 and problem_slug(response) == "store-unavailable"


# 4. The checks wait about a second on a hung Redis, whatever the URL says


def test_a_hung_redis_is_w011_within_seconds_though_the_url_says_60(settings):
    with silent_redis() as url:
        settings.IDEMPOTENCY = {
            "STORE": "redis",
            "REDIS_URL": f"{url}?socket_timeout=60&socket_connect_timeout=60&retry_on_timeout=yes",
        }
        started = time.monotonic()
        messages = idempotency_messages()
        waited = time.monotonic() - started

    message = only(messages, "idempotency.W011")
    assert "could not be read" in message.msg and "maxmemory-policy" in message.msg
    assert ids(messages) == ["idempotency.W011"]
    assert waited < 5, f"the checks waited {waited:.1f} s"
    print(f"checks against a hung Redis (URL socket_timeout=60): {waited:.2f} s")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cluster", [False, True])
def test_the_store_unavailable_log_line_never_shows_the_password(settings, caplog, cluster):
    url = f"redis://admin:p%2Fss%40w%3Ard@127.0.0.1:{free_port()}/0"
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": url, "REDIS_CLUSTER": cluster}

    response = post(Client(), uuid.uuid4().hex)

    assert response.status_code == 503 and "store unavailable" in caplog.text
    assert "p%2Fss" not in caplog.text and "p/ss" not in caplog.text
