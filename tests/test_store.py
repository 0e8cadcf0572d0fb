"""DatabaseRecordStore on its own: claims, versioned writes, the database clock."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils.dateparse import parse_datetime

from idempotency.models import IdempotencyRecord, Status
from idempotency.stores import Attempt, ClaimOutcome, StoredResponse
from idempotency.stores.database import DatabaseRecordStore
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db

TTL = timedelta(hours=24)
LOCK_FOR = timedelta(seconds=60)
FINGERPRINT = hashlib.sha256(b"POST /plain/ {}").hexdigest()
OTHER_FINGERPRINT = hashlib.sha256(b"POST /plain/ {amount: 2}").hexdigest()
TABLE = IdempotencyRecord._meta.db_table
RESPONSE = StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": 1}')


def attempt(
    key: str = "key-1", fingerprint: str = FINGERPRINT, scope: str = "anonymous"
) -> Attempt:
    return Attempt(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        method="POST",
        path="/plain/",
        ttl=TTL,
        lock_for=LOCK_FOR,
        atomic=False,  # the store's own rules; transactions: tests/test_transactions.py
    )


def complete(store: DatabaseRecordStore, claim: Any, response: StoredResponse) -> bool:
    return store.finish(claim, response, lambda: None)


@pytest.fixture
def store() -> DatabaseRecordStore:
    return DatabaseRecordStore("default")


# Times as data, set by SQL against the database's own clock; written here
# independently of idempotency.stores.dialects so a wrong dialect cannot hide.
def db_now_plus(seconds: int) -> tuple[str, list[object]]:
    if connection.vendor == "postgresql":
        return "STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second'", [seconds]
    if connection.vendor == "mysql":
        return "UTC_TIMESTAMP(6) + INTERVAL %s SECOND", [seconds]
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)", [f"{seconds:+d} seconds"]


def set_time(record_id: int, column: str, seconds_from_db_now: int) -> None:
    expression, params = db_now_plus(seconds_from_db_now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET {column} = {expression} WHERE id = %s", [*params, record_id]
        )
        assert cursor.rowcount == 1


def db_now() -> datetime:
    expression, params = db_now_plus(0)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", params)
        (value,) = cursor.fetchone()
    if isinstance(value, str):  # SQLite: UTC text
        value = parse_datetime(value)
    if value.tzinfo is None:  # MariaDB: naive UTC
        value = value.replace(tzinfo=timezone.utc)
    return value


def bump_version(record_id: int) -> None:
    """Another writer's versioned update, as a takeover would make it."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET version = version + 1 WHERE id = %s", [record_id])
        assert cursor.rowcount == 1


# Claiming


def test_claim_of_a_new_key_acquires_it_at_version_1(store):
    claim = store.claim(attempt())

    assert claim.outcome is ClaimOutcome.ACQUIRED
    assert claim.version == 1
    assert claim.taken_over is False
    record = IdempotencyRecord.objects.get()
    assert record.pk == claim.record_id
    assert (record.scope, record.key, record.fingerprint) == ("anonymous", "key-1", FINGERPRINT)
    assert (record.method, record.path) == ("POST", "/plain/")
    assert record.status == Status.IN_PROGRESS
    assert record.version == 1
    assert record.response_status is None
    assert record.response_body is None


def test_claim_sets_lock_and_expiry_from_one_database_clock_reading(store):
    before = db_now()
    claim = store.claim(attempt())
    after = db_now()

    record = IdempotencyRecord.objects.get(pk=claim.record_id)
    # SQLite's clock has millisecond precision: compare at that precision.
    assert before - timedelta(milliseconds=1) <= record.created_at <= after
    assert record.locked_until == record.created_at + LOCK_FOR
    assert record.expires_at == record.created_at + TTL


def test_second_claim_of_a_running_key_reports_in_progress(store):
    first = store.claim(attempt())

    second = store.claim(attempt())

    assert second.outcome is ClaimOutcome.IN_PROGRESS
    assert second.record_id == first.record_id
    assert IdempotencyRecord.objects.get().version == 1


def test_claim_with_another_fingerprint_reports_mismatch_while_running(store):
    store.claim(attempt())

    assert store.claim(attempt(fingerprint=OTHER_FINGERPRINT)).outcome is ClaimOutcome.MISMATCH


def test_claim_with_another_fingerprint_reports_mismatch_after_completion(store):
    complete(store, store.claim(attempt()), RESPONSE)

    assert store.claim(attempt(fingerprint=OTHER_FINGERPRINT)).outcome is ClaimOutcome.MISMATCH


def test_claim_after_complete_reports_replay_with_the_stored_response(store):
    complete(store, store.claim(attempt()), RESPONSE)

    claim = store.claim(attempt())

    assert claim.outcome is ClaimOutcome.REPLAY
    assert claim.response == RESPONSE


def test_same_key_in_another_scope_is_an_independent_record(store):
    complete(store, store.claim(attempt(scope="user:1")), RESPONSE)

    other = store.claim(attempt(scope="user:2", fingerprint=OTHER_FINGERPRINT))

    assert other.outcome is ClaimOutcome.ACQUIRED
    assert IdempotencyRecord.objects.filter(key="key-1").count() == 2


@pytest.mark.parametrize("variant", ["KEY-1", "Key-1", "key-1 ", " key-1", "key-1\t"])
def test_keys_differing_by_case_or_spaces_are_distinct_records(store, variant):
    complete(store, store.claim(attempt(key="key-1")), RESPONSE)

    claim = store.claim(attempt(key=variant, fingerprint=OTHER_FINGERPRINT))

    assert claim.outcome is ClaimOutcome.ACQUIRED
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == sorted(
        ["key-1", variant]
    )
    assert IdempotencyRecord.objects.get(key=variant).fingerprint == OTHER_FINGERPRINT


@pytest.mark.parametrize("variant", ["ANONYMOUS", "anonymous "])
def test_scopes_differing_by_case_or_spaces_never_share_a_response(store, variant):
    complete(store, store.claim(attempt(scope="anonymous")), RESPONSE)

    claim = store.claim(attempt(scope=variant))

    assert claim.outcome is ClaimOutcome.ACQUIRED
    assert claim.response is None


def test_longest_key_and_scope_the_columns_hold_round_trip(store):
    longest = attempt(key="k" * 255, scope="s" * 255)
    complete(store, store.claim(longest), RESPONSE)

    assert store.claim(longest).outcome is ClaimOutcome.REPLAY
    record = IdempotencyRecord.objects.get()
    assert (len(record.scope), len(record.key)) == (255, 255)


@pytest.mark.parametrize("field", ["key", "scope"])
def test_key_or_scope_longer_than_its_column_is_refused_before_any_write(store, field):
    # MariaDB's INSERT IGNORE would truncate it silently, and the claim would
    # never find its own record again: the store refuses it on every database.
    too_long = attempt(**{field: "k" * 256})

    with pytest.raises(ValueError, match=f"idempotency {field} is longer than its column"):
        store.claim(too_long)

    assert not IdempotencyRecord.objects.exists()


# Completing


@pytest.mark.parametrize(
    "response",
    [
        StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": 1}'),
        StoredResponse(200, {"Content-Type": "application/octet-stream"}, bytes(range(256))),
        StoredResponse(204, {}, b""),
        StoredResponse(
            201,
            {"Content-Type": "text/csv", "Location": "/c/1", "Link": '</a>; rel="next"'},
            "é,ü\n".encode("latin-1") + b"\x00\xff\xfe",
        ),
    ],
    ids=["json", "all-byte-values", "empty-body", "non-utf8-with-headers"],
)
def test_complete_stores_the_response_and_replays_it_byte_for_byte(store, response):
    claim = store.claim(attempt())

    assert complete(store, claim, response) is True

    record = IdempotencyRecord.objects.get()
    assert record.status == Status.COMPLETED
    assert record.version == 2
    assert record.locked_until is None
    assert record.response_status == response.status
    assert record.response_headers == response.headers
    assert bytes(record.response_body) == response.body
    assert store.claim(attempt()).response == response


def test_complete_of_an_unreplayable_response_keeps_no_body(store):
    complete(store, store.claim(attempt()), StoredResponse(200, {"Content-Type": "text/plain"}))

    record = IdempotencyRecord.objects.get()
    assert record.status == Status.COMPLETED
    assert record.response_body is None
    assert store.claim(attempt()).response == StoredResponse(200, {"Content-Type": "text/plain"})


def test_complete_at_a_stale_version_returns_false_and_changes_nothing(store):
    claim = store.claim(attempt())
    bump_version(claim.record_id)

    assert complete(store, claim, RESPONSE) is False

    record = IdempotencyRecord.objects.get()
    assert record.version == 2
    assert record.status == Status.IN_PROGRESS
    assert record.response_status is None
    assert record.response_body is None
    assert record.locked_until is not None


def test_complete_twice_with_the_same_claim_fails_the_second_time(store):
    claim = store.claim(attempt())
    assert complete(store, claim, RESPONSE) is True

    assert complete(store, claim, StoredResponse(200, {}, b"other")) is False

    assert bytes(IdempotencyRecord.objects.get().response_body) == RESPONSE.body


# Releasing


def test_release_deletes_the_record_so_the_key_can_be_claimed_again(store):
    claim = store.claim(attempt())

    assert store.release(claim) is True

    assert not IdempotencyRecord.objects.exists()
    assert store.claim(attempt()).outcome is ClaimOutcome.ACQUIRED


def test_release_at_a_stale_version_returns_false_and_keeps_the_record(store):
    claim = store.claim(attempt())
    bump_version(claim.record_id)

    assert store.release(claim) is False

    assert IdempotencyRecord.objects.get().version == 2


def test_release_deletes_only_its_own_record(store):
    mine = store.claim(attempt(key="mine"))
    store.claim(attempt(key="theirs"))

    store.release(mine)

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["theirs"]


# Taking over


def test_claim_takes_over_a_record_whose_lock_expired(store):
    first = store.claim(attempt())
    set_time(first.record_id, "locked_until", -1)

    second = store.claim(attempt())

    assert second.outcome is ClaimOutcome.ACQUIRED
    assert second.taken_over is True
    assert second.record_id == first.record_id
    assert second.version == 2
    record = IdempotencyRecord.objects.get()
    assert record.version == 2
    assert record.status == Status.IN_PROGRESS
    assert record.locked_until == record.created_at + LOCK_FOR


def test_claim_of_a_lock_expired_record_with_another_fingerprint_is_a_mismatch(store):
    # Decision: a dead worker's key still belongs to its request until the
    # record expires; another request with the same key is refused (422).
    first = store.claim(attempt())
    set_time(first.record_id, "locked_until", -1)

    claim = store.claim(attempt(fingerprint=OTHER_FINGERPRINT))

    assert claim.outcome is ClaimOutcome.MISMATCH
    record = IdempotencyRecord.objects.get()
    assert (record.version, record.fingerprint) == (1, FINGERPRINT)


def test_stale_owner_cannot_complete_or_release_after_a_takeover(store):
    stale = store.claim(attempt())
    set_time(stale.record_id, "locked_until", -1)
    taker = store.claim(attempt())

    assert complete(store, stale, StoredResponse(201, {}, b"stale")) is False
    assert store.release(stale) is False
    assert complete(store, taker, RESPONSE) is True

    record = IdempotencyRecord.objects.get()
    assert record.version == 3
    assert bytes(record.response_body) == RESPONSE.body


def test_completed_record_is_never_taken_over_before_it_expires(store):
    claim = store.claim(attempt())
    complete(store, claim, RESPONSE)
    set_time(claim.record_id, "locked_until", -3600)

    assert store.claim(attempt()).outcome is ClaimOutcome.REPLAY
    assert IdempotencyRecord.objects.get().version == 2


@pytest.mark.parametrize("fingerprint", [FINGERPRINT, OTHER_FINGERPRINT], ids=["same", "other"])
def test_expired_completed_record_is_taken_over_by_any_request(store, fingerprint):
    claim = store.claim(attempt())
    complete(store, claim, RESPONSE)
    set_time(claim.record_id, "expires_at", -1)

    taker = store.claim(attempt(fingerprint=fingerprint))

    assert taker.outcome is ClaimOutcome.ACQUIRED
    assert taker.taken_over is True
    assert taker.version == 3
    record = IdempotencyRecord.objects.get()
    assert record.fingerprint == fingerprint
    assert record.status == Status.IN_PROGRESS
    assert record.response_status is None
    assert record.response_body is None
    assert record.response_headers == {}
    assert record.expires_at == record.created_at + TTL


def test_expired_running_record_with_a_live_lock_is_not_taken_over(store):
    # A view slower than its TTL must not run a second time beside itself.
    running = store.claim(attempt())
    set_time(running.record_id, "expires_at", -1)

    assert store.claim(attempt()).outcome is ClaimOutcome.IN_PROGRESS
    assert store.claim(attempt(fingerprint=OTHER_FINGERPRINT)).outcome is ClaimOutcome.MISMATCH
    assert complete(store, running, RESPONSE) is True


def test_expired_running_record_whose_lock_expired_is_taken_over_by_another_request(store):
    stale = store.claim(attempt())
    set_time(stale.record_id, "expires_at", -1)
    set_time(stale.record_id, "locked_until", -1)

    taker = store.claim(attempt(fingerprint=OTHER_FINGERPRINT))

    assert taker.outcome is ClaimOutcome.ACQUIRED
    assert complete(store, stale, RESPONSE) is False
    assert IdempotencyRecord.objects.get().fingerprint == OTHER_FINGERPRINT


def test_factory_records_behave_as_their_traits_say(store):
    running = IdempotencyRecordFactory(key="running", fingerprint=FINGERPRINT)
    dead = IdempotencyRecordFactory(key="dead", fingerprint=FINGERPRINT, lock_expired=True)
    done = IdempotencyRecordFactory(key="done", fingerprint=FINGERPRINT, completed=True)
    gone = IdempotencyRecordFactory(
        key="gone", fingerprint=FINGERPRINT, completed=True, expired=True
    )

    assert store.claim(attempt(key=running.key)).outcome is ClaimOutcome.IN_PROGRESS
    assert store.claim(attempt(key=dead.key)).taken_over is True
    assert store.claim(attempt(key=done.key)).response == StoredResponse(
        201, {"Content-Type": "application/json"}, b'{"id": 1}'
    )
    assert store.claim(attempt(key=gone.key)).outcome is ClaimOutcome.ACQUIRED


# The database's clock, not Python's


def test_lock_expired_by_the_database_clock_is_taken_over(store):
    # The factory wrote a lock that Python's clock holds for another minute;
    # the database's clock says it expired a second ago. The database decides.
    record = IdempotencyRecordFactory(fingerprint=FINGERPRINT)
    set_time(record.pk, "locked_until", -1)

    assert store.claim(attempt(key=record.key)).outcome is ClaimOutcome.ACQUIRED


def test_lock_held_by_the_database_clock_is_in_progress(store):
    # The reverse: expired by Python's clock, held for an hour by the database's.
    record = IdempotencyRecordFactory(fingerprint=FINGERPRINT, lock_expired=True)
    set_time(record.pk, "locked_until", 3600)

    assert store.claim(attempt(key=record.key)).outcome is ClaimOutcome.IN_PROGRESS
    assert IdempotencyRecord.objects.get().version == 1


def test_expiry_by_the_database_clock_frees_the_key(store):
    record = IdempotencyRecordFactory(completed=True, fingerprint=FINGERPRINT)
    set_time(record.pk, "expires_at", -1)

    assert store.claim(attempt(key=record.key)).outcome is ClaimOutcome.ACQUIRED


def test_not_yet_expired_by_the_database_clock_replays(store):
    record = IdempotencyRecordFactory(completed=True, expired=True, fingerprint=FINGERPRINT)
    set_time(record.pk, "expires_at", 3600)

    assert store.claim(attempt(key=record.key)).outcome is ClaimOutcome.REPLAY


# The schema


def test_duplicate_scope_and_key_is_refused_by_the_database():
    IdempotencyRecordFactory(scope="anonymous", key="dup")

    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyRecordFactory(scope="anonymous", key="dup")

    assert IdempotencyRecord.objects.filter(key="dup").count() == 1


def test_duplicate_key_in_another_scope_is_accepted_by_the_database():
    IdempotencyRecordFactory(scope="user:1", key="dup")
    IdempotencyRecordFactory(scope="user:2", key="dup")

    assert IdempotencyRecord.objects.filter(key="dup").count() == 2
