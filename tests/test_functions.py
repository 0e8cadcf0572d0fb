"""``@idempotent_function`` on plain functions, every rule of contract section 7,
on every database; 16 real threads on PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.urls import reverse

import idempotency
from idempotency import (
    IdempotencyError,
    InProgressError,
    KeyReusedError,
    idempotent_function,
    signals,
)
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from idempotency.purge import purge_expired
from tests.concurrency.race import TALLIES, closing_connection, run_together
from tests.test_purge import _set_relative_to_db_clock
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

runs: list[str] = []


@idempotent_function(key="order_id")
def charge(order_id, amount, currency="EUR"):
    runs.append(order_id)
    row = Charge.objects.create(amount=amount, label=order_id)
    return {"charge": row.pk, "amount": amount, "currency": currency}


@idempotent_function(key=lambda payment: payment["reference"], scope="payments", ttl=60)
def pay(payment):
    runs.append(payment["reference"])
    return (Charge.objects.create(amount=payment["amount"]).pk, "paid")


@pytest.fixture(autouse=True)
def fresh_runs():
    runs.clear()


def record_of(key, scope="functions"):
    return IdempotencyRecord.objects.get(scope=scope, key=digest(key))


# --- the first call runs, later calls replay -------------------------------


def test_the_first_call_runs_and_every_later_call_returns_the_stored_value():
    first = charge("o-1", 500)
    again = charge("o-1", 500)
    by_keyword = charge(order_id="o-1", amount=500, currency="EUR")

    assert runs == ["o-1"]
    assert Charge.objects.count() == 1
    assert first == again == by_keyword == {"charge": Charge.objects.get().pk, "amount": 500,
                                             "currency": "EUR"}  # fmt: skip
    record = record_of("o-1")
    assert (record.status, record.version, record.method) == (Status.COMPLETED, 2, "CALL")
    assert record.path == "tests.test_functions.charge"


def test_a_replay_is_the_value_as_json_loads_gives_it_back():
    first = pay({"reference": "r-1", "amount": 3})
    replayed = pay({"reference": "r-1", "amount": 3})

    assert runs == ["r-1"]
    assert first == (Charge.objects.get().pk, "paid")  # the function's own value
    assert replayed == [Charge.objects.get().pk, "paid"]  # a JSON array comes back a list


def test_a_key_callable_and_a_scope_name_the_record():
    pay({"reference": "r-2", "amount": 3})

    record = record_of("r-2", scope="payments")
    assert record.key == digest("r-2")  # the key itself is never stored
    assert not IdempotencyRecord.objects.filter(scope="functions").exists()


def test_ttl_sets_the_records_expiry():
    pay({"reference": "r-ttl", "amount": 3})

    record = record_of("r-ttl", scope="payments")
    assert timedelta(seconds=55) < record.expires_at - record.created_at <= timedelta(seconds=61)


def test_other_keys_run_independently():
    charge("o-a", 1)
    charge("o-b", 1)

    assert runs == ["o-a", "o-b"]
    assert Charge.objects.count() == 2


# --- the fingerprint ------------------------------------------------------


def test_the_same_key_with_other_arguments_raises_key_reused_and_does_not_run():
    charge("o-2", 500)

    with pytest.raises(KeyReusedError) as raised:
        charge("o-2", 501)
    with pytest.raises(KeyReusedError):
        charge("o-2", 500, currency="USD")

    assert runs == ["o-2"]
    assert Charge.objects.count() == 1
    assert isinstance(raised.value, IdempotencyError)


def test_default_arguments_are_part_of_the_fingerprint_as_if_passed():
    charge("o-3", 500)

    assert charge("o-3", 500, "EUR") == charge("o-3", 500)
    assert runs == ["o-3"]


def test_values_json_has_no_type_for_are_fingerprinted_by_type_and_value():
    @idempotent_function(key="reference")
    def refund(reference, amount):
        runs.append(reference)
        return str(amount)

    assert refund("f-1", Decimal("1.50")) == "1.50"
    with pytest.raises(KeyReusedError):
        refund("f-1", "1.50")  # a str is not a Decimal
    with pytest.raises(KeyReusedError):
        refund("f-1", Decimal("1.5"))  # compared as written
    assert refund("f-1", Decimal("1.50")) == "1.50"
    assert runs == ["f-1"]


def test_the_same_key_for_another_function_raises_key_reused():
    @idempotent_function(key="order_id")
    def ship(order_id, amount):
        runs.append("ship")

    charge("o-4", 500)
    with pytest.raises(KeyReusedError):
        ship("o-4", 500)
    assert runs == ["o-4"]


def test_a_fingerprint_callable_replaces_the_arguments():
    @idempotent_function(key="event_id", fingerprint=lambda event_id, payload: payload["type"])
    def handle(event_id, payload):
        runs.append(payload["received_at"])
        return payload["type"]

    assert handle("evt-1", {"type": "paid", "received_at": 1}) == "paid"
    assert handle("evt-1", {"type": "paid", "received_at": 2}) == "paid"  # volatile field
    with pytest.raises(KeyReusedError):
        handle("evt-1", {"type": "refunded", "received_at": 3})
    assert runs == [1]


# --- in progress ------------------------------------------------------------


def test_a_call_while_the_key_is_held_raises_in_progress_with_retry_after(settings):
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": 30}
    seen = []

    @idempotent_function(key="job")
    def reentrant(job, depth):
        runs.append(depth)
        if depth == 0:
            try:
                reentrant(job, 0)
            except InProgressError as error:
                seen.append(error)
        return depth

    assert reentrant("j-1", 0) == 0

    assert runs == [0]
    [error] = seen
    assert isinstance(error, IdempotencyError)
    assert 25 < error.retry_after <= 30
    assert reentrant("j-1", 0) == 0  # completed now: the stored value


def test_other_arguments_while_the_key_is_held_raise_key_reused():
    seen = []

    @idempotent_function(key="job")
    def outer(job, depth):
        if depth == 0:
            try:
                outer(job, 1)
            except KeyReusedError as error:
                seen.append(error)
        return depth

    outer("j-2", 0)
    assert len(seen) == 1


def test_a_dead_callers_expired_lock_is_taken_over_and_the_function_runs():
    charge("o-dead", 5)
    # As a worker that died mid-call leaves it: in progress, its lock expired.
    IdempotencyRecord.objects.filter(key=digest("o-dead")).update(
        status=Status.IN_PROGRESS, response_body=None
    )
    _set_relative_to_db_clock(record_of("o-dead"), locked_until=timedelta(seconds=-1))
    version = record_of("o-dead").version

    result = charge("o-dead", 5)

    assert runs == ["o-dead", "o-dead"]
    record = record_of("o-dead")
    assert (record.status, record.version) == (Status.COMPLETED, version + 2)
    assert charge("o-dead", 5) == result


def test_signals_are_sent_with_request_none(django_capture_on_commit_callbacks):
    received = []

    def receiver(signal, **kwargs):
        received.append((signal, kwargs["request"], kwargs["scope"], kwargs.get("status")))

    for signal in (signals.response_stored, signals.response_replayed, signals.key_reused):
        signal.connect(receiver, weak=False)
    try:
        # response_stored is sent once the call's transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            charge("o-sig", 1)
        charge("o-sig", 1)
        with pytest.raises(KeyReusedError):
            charge("o-sig", 2)
    finally:
        for signal in (signals.response_stored, signals.response_replayed, signals.key_reused):
            signal.disconnect(receiver)

    assert received == [
        (signals.response_stored, None, "functions", 200),
        (signals.response_replayed, None, "functions", 200),
        (signals.key_reused, None, "functions", None),
    ]


# --- failures ---------------------------------------------------------------


def test_a_function_that_raises_stores_nothing_rolls_back_and_runs_again_next_time():
    attempts = []

    @idempotent_function(key="order_id")
    def flaky(order_id):
        attempts.append(order_id)
        Charge.objects.create(amount=len(attempts), label="flaky")
        if len(attempts) == 1:
            raise ConnectionError("the payment provider timed out")
        return len(attempts)

    with pytest.raises(ConnectionError):
        flaky("o-5")
    assert not IdempotencyRecord.objects.exists()
    assert not Charge.objects.exists()  # its write rolled back with the release

    assert flaky("o-5") == 2
    assert flaky("o-5") == 2
    assert attempts == ["o-5", "o-5"]
    assert list(Charge.objects.values_list("amount", flat=True)) == [2]


def test_a_return_value_that_is_not_json_raises_type_error_and_rolls_back():
    @idempotent_function(key="order_id")
    def unserialisable(order_id):
        runs.append(order_id)
        Charge.objects.create(amount=1)
        return object()

    with pytest.raises(TypeError, match="JSON-serialisable"):
        unserialisable("o-6")
    with pytest.raises(TypeError):
        unserialisable("o-6")  # nothing was stored: it runs again

    assert runs == ["o-6", "o-6"]
    assert not IdempotencyRecord.objects.exists()
    assert not Charge.objects.exists()


def test_a_return_value_larger_than_max_stored_response_bytes_is_not_kept(settings, caplog):
    settings.IDEMPOTENCY = {"MAX_STORED_RESPONSE_BYTES": 64}

    @idempotent_function(key="order_id")
    def report(order_id):
        runs.append(order_id)
        Charge.objects.create(amount=1)
        return {"lines": ["x" * 100]}

    assert report("o-big") == {"lines": ["x" * 100]}  # the caller gets it once
    with pytest.raises(IdempotencyError, match="MAX_STORED_RESPONSE_BYTES") as raised:
        report("o-big")

    assert runs == ["o-big"]  # it ran, and a retry must not run it again
    assert Charge.objects.count() == 1
    record = record_of("o-big")
    assert (record.status, record.response_body) == (Status.COMPLETED, None)
    assert "report" in str(raised.value)
    assert "larger than MAX_STORED_RESPONSE_BYTES" in caplog.text


def test_the_functions_writes_and_the_stored_value_commit_together():
    result = charge("o-7", 9)

    with transaction.atomic():  # a fresh read of both, as another connection would see
        record = record_of("o-7")
        assert Charge.objects.filter(pk=result["charge"]).exists()
        assert record.status == Status.COMPLETED
        assert (
            bytes(record.response_body)
            == b'{"charge":%d,"amount":9,"currency":"EUR"}' % (result["charge"])
        )


def test_a_function_that_rolls_back_its_transaction_stores_nothing():
    @idempotent_function(key="order_id")
    def declined(order_id):
        runs.append(order_id)
        Charge.objects.create(amount=1)
        transaction.set_rollback(True)
        return "declined"

    assert declined("o-8") == "declined"
    assert declined("o-8") == "declined"
    assert runs == ["o-8", "o-8"]
    assert not Charge.objects.exists()


# --- misuse fails loudly at decoration time --------------------------------


def test_a_key_naming_no_parameter_raises_at_decoration():
    with pytest.raises(TypeError, match="has no parameter 'order'"):

        @idempotent_function(key="order")
        def f(order_id): ...


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"key": None}, TypeError),
        ({"key": ""}, TypeError),
        ({"key": "a", "scope": ""}, TypeError),
        ({"key": "a", "ttl": 0}, ValueError),
        ({"key": "a", "fingerprint": "x"}, TypeError),
        ({"key": "a", "on_in_progress": "wait"}, ValueError),
    ],
)
def test_bad_options_raise_at_decoration(options, error):
    with pytest.raises(error):
        idempotent_function(**options)


def test_async_functions_are_refused_at_decoration():
    with pytest.raises(TypeError, match="async"):

        @idempotent_function(key="a")
        async def f(a): ...


@pytest.mark.parametrize("key", [None, "", 1.5, True])
def test_a_key_that_is_not_a_str_int_or_uuid_raises_and_does_not_run(key):
    @idempotent_function(key="k")
    def f(k):
        runs.append(k)

    with pytest.raises(ValueError, match="non-empty str, an int or a UUID"):
        f(key)
    assert runs == []


def test_int_and_uuid_keys_are_accepted():
    @idempotent_function(key="k")
    def f(k):
        runs.append(k)
        return 1

    ident = uuid.uuid4()
    assert f(7) == f(7) == f(ident) == f(ident) == 1
    assert runs == [7, ident]


def test_the_public_names_are_exported_lazily():
    assert {"idempotent_function", "IdempotencyError", "KeyReusedError",
            "InProgressError"} <= set(idempotency.__all__)  # fmt: skip
    assert issubclass(KeyReusedError, IdempotencyError)
    assert issubclass(InProgressError, IdempotencyError)


# --- shared with views: the admin and the purge ----------------------------


def test_the_admin_shows_a_function_record_readably(admin_client):
    charge("o-9", 42)
    record = record_of("o-9")

    page = admin_client.get(
        reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])
    ).content.decode()

    assert "CALL tests.test_functions.charge" in page
    assert "returned a value" in page
    assert "&quot;amount&quot;: 42" in page  # pretty-printed JSON, escaped
    listing = admin_client.get(reverse("admin:idempotency_idempotencyrecord_changelist"))
    assert record in listing.context["cl"].result_list


def test_the_purge_deletes_expired_function_records():
    charge("o-10", 1)
    charge("o-11", 1)
    _set_relative_to_db_clock(record_of("o-10"), expires_at=timedelta(seconds=-5))

    assert purge_expired() == 1

    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {digest("o-11")}
    charge("o-10", 1)  # the key can be used again
    assert runs == ["o-10", "o-11", "o-10"]


# --- 16 real threads ---------------------------------------------------------

THREADS = 16


@pytest.mark.concurrency
def test_sixteen_threads_with_one_key_run_the_function_once(transactional_db):
    others_answered = threading.Event()
    answered = []
    lock = threading.Lock()

    @idempotent_function(key="order_id")
    def slow_charge(order_id):
        runs.append(order_id)
        # Hold the key until every other thread has had its answer: a wait
        # for an event, not a sleep racing the others.
        assert others_answered.wait(60)
        return Charge.objects.create(amount=1, label=order_id).pk

    def call():
        try:
            return ("value", slow_charge("o-16"))
        except InProgressError as error:
            with lock:
                answered.append(error.retry_after)
                if len(answered) == THREADS - 1:
                    others_answered.set()
            return ("in progress", error.retry_after)

    outcomes = run_together([closing_connection(call) for _ in range(THREADS)])

    values = [value for kind, value in outcomes if kind == "value"]
    in_progress = [kind for kind, _ in outcomes if kind == "in progress"]
    assert runs == ["o-16"]
    assert Charge.objects.count() == 1
    pk = Charge.objects.get().pk
    assert values == [pk] * len(values) and len(values) >= 1
    assert len(values) + len(in_progress) == THREADS
    assert slow_charge("o-16") == pk
    TALLIES.append(
        f"functions, 16 threads ({connection.vendor}): 1 run, {len(in_progress)} "
        f"InProgressError, {len(values) - 1} stored value"
    )


@idempotent_function(key="order_id")
def durable_charge(order_id):
    runs.append(order_id)
    with transaction.atomic(durable=True):
        Charge.objects.create(amount=1, label=order_id)
    return "charged"


def test_a_function_opening_a_durable_block_raises_djangos_error_and_is_released():
    # Functions have no atomic=False: Django's refusal reaches the caller as it is.
    for _ in range(2):
        with pytest.raises(RuntimeError, match="durable atomic block cannot be nested"):
            durable_charge("durable-order")
    assert runs == ["durable-order", "durable-order"]  # released: the retry ran again
    assert not IdempotencyRecord.objects.exists()
