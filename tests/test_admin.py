"""The admin of IdempotencyRecord, through Django's test client on every database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from idempotency.admin import EstimatedCountPaginator
from idempotency.models import IdempotencyRecord, Status
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:idempotency_idempotencyrecord_changelist")


def change_url(record):
    return reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])


def listed_keys(response):
    return {record.key for record in response.context["cl"].result_list}


def completed(body, content_type, extra_headers=(), **kwargs):
    headers = {"Content-Type": content_type} if content_type else {}
    return IdempotencyRecordFactory(
        completed=True,
        response_body=body,
        response_headers={**headers, **dict(extra_headers)},
        **kwargs,
    )


# The list


def test_changelist_shows_the_columns(admin_client):
    record = IdempotencyRecordFactory(
        completed=True, key="k-columns", scope="user:7", method="PUT", path="/orders/9/"
    )
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    content = response.content.decode()
    for header in ("column-key", "column-scope", "column-status", "column-request_line"):
        assert header in content
    for header in ("column-response_status", "column-created_at", "column-expires_at"):
        assert header in content
    assert "k-columns" in content
    assert "user:7" in content
    assert "PUT /orders/9/" in content
    assert f">{record.response_status}<" in content


def test_status_filter_narrows_the_list(admin_client):
    IdempotencyRecordFactory(key="running")
    IdempotencyRecordFactory(key="done", completed=True)
    response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED})
    assert listed_keys(response) == {"done"}
    response = admin_client.get(CHANGELIST, {"status__exact": Status.IN_PROGRESS})
    assert listed_keys(response) == {"running"}


def test_expired_filter_compares_expiry_with_now(admin_client):
    IdempotencyRecordFactory(key="old", completed=True, expired=True)
    IdempotencyRecordFactory(key="fresh", completed=True)
    assert listed_keys(admin_client.get(CHANGELIST, {"expired": "yes"})) == {"old"}
    assert listed_keys(admin_client.get(CHANGELIST, {"expired": "no"})) == {"fresh"}


@pytest.mark.parametrize(
    ("status_class", "expected"),
    [
        ("2xx", {"s200", "s299"}),
        ("3xx", {"s302"}),
        ("4xx", {"s404"}),
        ("5xx", {"s500"}),
        ("none", {"running"}),
    ],
)
def test_response_status_class_filter_narrows_the_list(admin_client, status_class, expected):
    for status in (200, 299, 302, 404, 500):
        IdempotencyRecordFactory(key=f"s{status}", completed=True, response_status=status)
    IdempotencyRecordFactory(key="running")
    response = admin_client.get(CHANGELIST, {"response_status_class": status_class})
    assert listed_keys(response) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("key-one", {"key-one"}),  # an exact key
        ("key", set()),  # not a key prefix: keys match exactly
        ("KEY-ONE", set()),  # keys are case-sensitive
        ("user:2", {"key-two"}),  # an exact scope
        ("/refunds/", {"key-two"}),  # the beginning of a path
    ],
)
def test_search_by_key_scope_or_path(admin_client, query, expected):
    IdempotencyRecordFactory(key="key-one", scope="user:1", path="/payments/1/")
    IdempotencyRecordFactory(key="key-two", scope="user:2", path="/refunds/2/")
    response = admin_client.get(CHANGELIST, {"q": query})
    assert listed_keys(response) == expected


def test_changelist_has_a_date_hierarchy_on_created_at(admin_client):
    IdempotencyRecordFactory()
    response = admin_client.get(CHANGELIST)
    assert response.context["cl"].date_hierarchy == "created_at"
    content = response.content.decode()
    today = timezone.now()
    assert f"created_at__day={today.day}" in content  # the drill-down link
    response = admin_client.get(
        CHANGELIST,
        {
            "created_at__year": today.year,
            "created_at__month": today.month,
            "created_at__day": today.day,
        },
    )
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


def test_changelist_queries_are_bounded_and_never_count_the_whole_table(
    admin_client, django_assert_max_num_queries
):
    IdempotencyRecordFactory.create_batch(30, completed=True)
    IdempotencyRecordFactory.create_batch(5)
    with django_assert_max_num_queries(8) as captured:
        response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(" in query["sql"]]
    # One count, the filtered one: show_full_result_count = False spares the other.
    assert len(counts) == 1
    assert "WHERE" in counts[0]


def test_changelist_query_count_does_not_grow_with_the_rows(admin_client):
    IdempotencyRecordFactory.create_batch(3, completed=True)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    IdempotencyRecordFactory.create_batch(60, completed=True)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(CHANGELIST)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_paginator_counts_exactly_when_the_list_is_filtered():
    IdempotencyRecordFactory.create_batch(3)
    IdempotencyRecordFactory(completed=True)
    queryset = IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).order_by("pk")
    paginator = EstimatedCountPaginator(queryset, 100)
    paginator.estimate_above = 0
    assert paginator.count == 3


def test_paginator_estimates_the_unfiltered_table_on_postgresql_only():
    IdempotencyRecordFactory.create_batch(7)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE idempotency_idempotencyrecord")  # sets reltuples
    paginator = EstimatedCountPaginator(IdempotencyRecord.objects.order_by("pk"), 100)
    paginator.estimate_above = 5
    with CaptureQueriesContext(connection) as captured:
        assert paginator.count == 7
    sql = " ".join(query["sql"] for query in captured.captured_queries)
    if connection.vendor == "postgresql":
        assert "reltuples" in sql
        assert "COUNT(" not in sql
    else:
        assert "COUNT(" in sql


def test_paginator_counts_exactly_below_the_estimate_threshold():
    IdempotencyRecordFactory.create_batch(4)
    paginator = EstimatedCountPaginator(IdempotencyRecord.objects.order_by("pk"), 100)
    assert paginator.count == 4


# The detail page


def test_detail_pretty_prints_a_json_body(admin_client):
    record = completed(json.dumps({"id": 41, "items": [1, 2]}).encode(), "application/json")
    content = admin_client.get(change_url(record)).content.decode()
    assert (
        '<pre class="idempotency-body">{\n  &quot;id&quot;: 41,\n  &quot;items&quot;: [' in content
    )


def test_detail_decodes_text_with_the_charset_of_its_content_type(admin_client):
    record = completed("Grüße".encode("latin-1"), "text/plain; charset=iso-8859-1")
    content = admin_client.get(change_url(record)).content.decode()
    assert '<pre class="idempotency-body">Grüße</pre>' in content


def test_detail_shows_a_binary_body_as_its_size_and_type(admin_client):
    record = completed(bytes(range(256)) * 4, "application/pdf")
    content = admin_client.get(change_url(record)).content.decode()
    assert "1024 bytes of binary content (application/pdf), not shown." in content
    assert "idempotency-body" not in content


def test_detail_shows_text_that_does_not_decode_as_binary(admin_client):
    record = completed(b"\xff\xfe\x00broken", "text/plain; charset=utf-8")
    content = admin_client.get(change_url(record)).content.decode()
    assert "9 bytes of binary content (text/plain; charset=utf-8), not shown." in content


def test_detail_shows_the_headers_as_a_table(admin_client):
    record = completed(b"{}", "application/json", {"Location": "/payments/41/"})
    content = admin_client.get(change_url(record)).content.decode()
    assert '<table class="idempotency-headers">' in content
    assert "<tr><th>Location</th><td>/payments/41/</td></tr>" in content
    assert "<tr><th>Content-Type</th><td>application/json</td></tr>" in content


def test_detail_says_a_passed_through_response_was_not_stored(admin_client):
    record = IdempotencyRecordFactory(completed=True, response_body=None, response_status=200)
    content = admin_client.get(change_url(record)).content.decode()
    assert "The response was passed through and not stored" in content


def test_detail_says_an_in_progress_record_is_running_and_until_when_it_is_locked(admin_client):
    locked_until = timezone.now() + timedelta(seconds=30)
    record = IdempotencyRecordFactory(locked_until=locked_until)
    response = admin_client.get(change_url(record))
    content = response.content.decode()
    assert "In progress: the first request is still running, or its worker died." in content
    assert f"Locked until {locked_until}" in content


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json", ""])
def test_detail_escapes_a_stored_script(admin_client, content_type):
    body = b'"<script>alert(1)</script>"'
    record = completed(
        body,
        content_type,
        key="<script>alert(2)</script>",
        path="/<script>alert(3)</script>/",
        extra_headers={"X-Evil": "<script>alert(4)</script>"},
    )
    content = admin_client.get(change_url(record)).content.decode()
    assert "<script>alert(" not in content
    if content_type:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in content


def test_changelist_escapes_stored_keys_and_paths(admin_client):
    IdempotencyRecordFactory(key="<script>alert(1)</script>", path="/<b>x</b>/")
    content = admin_client.get(CHANGELIST).content.decode()
    assert "<script>alert(1)" not in content
    assert "<b>x</b>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


# Read-only


def test_add_page_is_forbidden(admin_client):
    url = reverse("admin:idempotency_idempotencyrecord_add")
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"scope": "s", "key": "k"}).status_code == 403
    assert not IdempotencyRecord.objects.exists()


def test_detail_page_has_no_form_to_save(admin_client):
    record = IdempotencyRecordFactory(completed=True)
    response = admin_client.get(change_url(record))
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()


def test_change_post_does_not_modify_the_record(admin_client):
    record = IdempotencyRecordFactory(completed=True, key="original", response_status=201)
    response = admin_client.post(
        change_url(record), {"key": "changed", "status": Status.IN_PROGRESS, "response_status": 500}
    )
    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.key, record.status, record.response_status, record.version) == (
        "original",
        Status.COMPLETED,
        201,
        2,
    )


# Releasing


def action_post(records, **extra):
    return {"action": "release_records", "_selected_action": [r.pk for r in records], **extra}


def test_release_action_asks_for_confirmation_first(admin_client):
    stuck, other = IdempotencyRecordFactory(key="stuck"), IdempotencyRecordFactory(key="other")
    response = admin_client.post(CHANGELIST, action_post([stuck]))
    assert response.status_code == 200
    assert (
        response.templates[0].name
        == "admin/idempotency/idempotencyrecord/release_confirmation.html"
    )
    content = response.content.decode()
    assert "stuck" in content
    assert f'name="version" value="{stuck.pk}:{stuck.version}"' in content
    assert 'name="post" value="yes"' in content
    assert IdempotencyRecord.objects.filter(pk__in=[stuck.pk, other.pk]).count() == 2


def test_release_action_deletes_exactly_the_selected_records(admin_client):
    first, second, kept = IdempotencyRecordFactory.create_batch(3)
    versions = [f"{r.pk}:{r.version}" for r in (first, second)]
    response = admin_client.post(
        CHANGELIST, action_post([first, second], post="yes", version=versions), follow=True
    )
    assert response.status_code == 200
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    assert "Released 2 idempotency records." in [str(m) for m in response.context["messages"]]


def test_release_action_keeps_a_record_that_changed_since_the_confirmation(admin_client):
    record = IdempotencyRecordFactory()
    stale = f"{record.pk}:{record.version}"
    IdempotencyRecord.objects.filter(pk=record.pk).update(version=record.version + 1)
    response = admin_client.post(
        CHANGELIST, action_post([record], post="yes", version=[stale]), follow=True
    )
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
    messages = [str(m) for m in response.context["messages"]]
    assert "Released 0 idempotency records." in messages
    assert "1 record changed since the confirmation and was kept." in messages


def test_release_action_is_offered_only_with_delete_permission(client):
    record = IdempotencyRecordFactory()
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_idempotencyrecord"))
    client.force_login(viewer)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "release_records" not in response.content.decode()
    client.post(CHANGELIST, action_post([record], post="yes", version=[f"{record.pk}:1"]))
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()

    viewer.user_permissions.add(Permission.objects.get(codename="delete_idempotencyrecord"))
    viewer = User.objects.get(pk=viewer.pk)  # a fresh permission cache
    client.force_login(viewer)
    assert "release_records" in client.get(CHANGELIST).content.decode()


def test_default_delete_selected_action_is_replaced_by_release(admin_client):
    IdempotencyRecordFactory()
    content = admin_client.get(CHANGELIST).content.decode()
    assert 'value="release_records"' in content
    assert 'value="delete_selected"' not in content
