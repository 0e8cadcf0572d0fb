"""The admin of IdempotencyRecord, through Django's test client on every database.

Records are created as the store creates them: the key column holds
``digest(key)``, never the key (``idempotency.keys``).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from idempotency.admin import IdempotencyRecordAdmin
from idempotency.admin.pagination import BoundedCountPaginator
from idempotency.keys import digest, shown
from idempotency.models import IdempotencyRecord, Status
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:idempotency_idempotencyrecord_changelist")


def change_url(record):
    return reverse("admin:idempotency_idempotencyrecord_change", args=[record.pk])


def delete_url(record):
    return reverse("admin:idempotency_idempotencyrecord_delete", args=[record.pk])


def keyed(raw, **kwargs):
    """A record of the key ``raw``, stored as the store stores it."""
    return IdempotencyRecordFactory(key=digest(raw), **kwargs)


def digests_of(*raws):
    return {digest(raw) for raw in raws}


def listed_keys(response):
    return {record.key for record in response.context["cl"].result_list}


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def completed(body, content_type, extra_headers=(), **kwargs):
    headers = {"Content-Type": content_type} if content_type else {}
    return IdempotencyRecordFactory(
        completed=True,
        response_body=body,
        response_headers={**headers, **dict(extra_headers)},
        **kwargs,
    )


def staff(client, username, *codenames):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


# The list


def test_changelist_shows_the_columns(admin_client):
    record = keyed("k-columns", completed=True, scope="user:7", method="PUT", path="/orders/9/")
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    content = response.content.decode()
    for header in ("column-shown_key", "column-scope", "column-status", "column-request_line"):
        assert header in content
    for header in ("column-response_status", "column-created_at", "column-expires_at"):
        assert header in content
    assert "user:7" in content
    assert "PUT /orders/9/" in content
    assert f">{record.response_status}<" in content


def test_changelist_shows_the_start_of_the_key_digest_never_the_digest(admin_client):
    record = keyed("k-secret", completed=True)
    content = admin_client.get(CHANGELIST).content.decode()
    assert shown(record.key) in content
    assert record.key not in content
    content = admin_client.get(change_url(record)).content.decode()
    assert shown(record.key) in content  # the title and breadcrumbs are str(record)
    assert record.key not in content


def test_status_filter_narrows_the_list(admin_client):
    keyed("running")
    keyed("done", completed=True)
    response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED})
    assert listed_keys(response) == digests_of("done")
    response = admin_client.get(CHANGELIST, {"status__exact": Status.IN_PROGRESS})
    assert listed_keys(response) == digests_of("running")


def test_expired_filter_compares_expiry_with_now(admin_client):
    keyed("old", completed=True, expired=True)
    keyed("fresh", completed=True)
    assert listed_keys(admin_client.get(CHANGELIST, {"expired": "yes"})) == digests_of("old")
    assert listed_keys(admin_client.get(CHANGELIST, {"expired": "no"})) == digests_of("fresh")


def test_expired_filter_lists_the_latest_expiry_first(admin_client):
    now = timezone.now()
    later = keyed("later", completed=True, created_at=now - timedelta(days=3))
    later.expires_at = now + timedelta(hours=5)
    later.save()
    sooner = keyed("sooner", completed=True)  # the newer id, expiring sooner
    sooner.expires_at = now + timedelta(hours=1)
    sooner.save()
    response = admin_client.get(CHANGELIST, {"expired": "no"})
    assert [r.pk for r in response.context["cl"].result_list] == [later.pk, sooner.pk]


@pytest.mark.parametrize(
    ("status_class", "expected"),
    [
        ("2xx", {"s200", "s299"}),
        ("3xx", {"s302"}),
        ("4xx", {"s404"}),
        ("none", {"running"}),
    ],
)
def test_response_status_class_filter_narrows_the_list(admin_client, status_class, expected):
    for status in (200, 299, 302, 404):
        keyed(f"s{status}", completed=True, response_status=status)
    keyed("running")
    response = admin_client.get(CHANGELIST, {"response_status_class": status_class})
    assert listed_keys(response) == digests_of(*expected)


def test_response_status_filter_offers_no_5xx_which_is_never_stored(admin_client):
    content = admin_client.get(CHANGELIST).content.decode()
    assert "response_status_class=4xx" in content
    assert "response_status_class=5xx" not in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("key-one", {"key-one"}),  # an exact key, found by its digest
        (" key-one ", {"key-one"}),  # pasted with spaces around it
        ("key", set()),  # not a key prefix: keys match exactly
        ("KEY-ONE", set()),  # keys are case-sensitive
        ("user:2", {"key-two"}),  # an exact scope
        ("user:", set()),  # not a scope prefix
        ("/refunds/", {"key-two"}),  # the beginning of a path
        ("/refunds/2/", {"key-two"}),  # a whole path
        ("/2/", set()),  # not the middle of a path
    ],
)
def test_search_by_key_scope_or_path(admin_client, query, expected):
    keyed("key-one", scope="user:1", path="/payments/1/")
    keyed("key-two", scope="user:2", path="/refunds/2/")
    response = admin_client.get(CHANGELIST, {"q": query})
    assert listed_keys(response) == digests_of(*expected)


def test_search_by_key_does_not_match_the_digest_itself(admin_client):
    record = keyed("key-one")
    assert listed_keys(admin_client.get(CHANGELIST, {"q": record.key})) == set()


def test_search_finds_a_key_stored_under_a_previous_secret(admin_client, settings):
    old = keyed("rotated-key")  # digest under the current SECRET_KEY
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret"
    new = keyed("rotated-key", scope="user:9")
    response = admin_client.get(CHANGELIST, {"q": "rotated-key"})
    assert {r.pk for r in response.context["cl"].result_list} == {old.pk, new.pk}


@pytest.mark.parametrize("wildcard", ["%", "_"])
def test_search_by_path_takes_wildcards_literally(admin_client, wildcard):
    keyed("literal", path=f"/a{wildcard}b/")
    keyed("other", path="/axb/")
    response = admin_client.get(CHANGELIST, {"q": f"/a{wildcard}"})
    assert listed_keys(response) == digests_of("literal")


def test_search_by_path_prefix_ending_in_the_last_code_point(admin_client):
    keyed("edge", path="/\U0010ffff/x")
    keyed("other", path="/a")
    assert listed_keys(admin_client.get(CHANGELIST, {"q": "/\U0010ffff"})) == digests_of("edge")


def test_changelist_has_no_date_hierarchy(admin_client):
    # Django's date hierarchy reads every row for its DISTINCT days
    # (docs/admin.md, Performance): the list has none.
    keyed("any")
    response = admin_client.get(CHANGELIST)
    assert response.context["cl"].date_hierarchy is None
    assert "created_at__day=" not in response.content.decode()


def test_columns_are_not_sortable(admin_client):
    keyed("any", completed=True)
    content = admin_client.get(CHANGELIST).content.decode()
    assert "sortable" not in content
    assert "?o=" not in content


def test_changelist_queries_are_bounded_and_never_count(
    admin_client, django_assert_max_num_queries
):
    IdempotencyRecordFactory.create_batch(30, completed=True)
    IdempotencyRecordFactory.create_batch(5)
    with django_assert_max_num_queries(8) as captured:
        response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30
    assert "30 idempotency records" in response.content.decode()
    assert not [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"]]


def test_changelist_query_count_does_not_grow_with_the_rows(admin_client):
    IdempotencyRecordFactory.create_batch(3, completed=True)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    IdempotencyRecordFactory.create_batch(60, completed=True)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(CHANGELIST)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_long_filtered_list_says_more_than_the_limit(admin_client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "count_limit", 5)
    monkeypatch.setattr(IdempotencyRecordAdmin, "list_per_page", 2)
    records = IdempotencyRecordFactory.create_batch(9, completed=True)
    response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED})
    content = response.content.decode()
    assert "more than 5 idempotency records" in content
    newest = sorted((r.pk for r in records), reverse=True)
    assert [r.pk for r in response.context["cl"].result_list] == newest[:2]
    # A page past the counted ones exists: the count is a lower bound.
    response = admin_client.get(CHANGELIST, {"status__exact": Status.COMPLETED, "p": 5})
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == newest[8:]


def test_a_search_with_many_results_says_more_than_the_limit(admin_client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "count_limit", 3)
    IdempotencyRecordFactory.create_batch(5, scope="user:5")
    content = admin_client.get(CHANGELIST, {"q": "user:5"}).content.decode()
    assert "more than 3 results" in content


def test_a_filtered_list_reads_its_rows_once(admin_client, monkeypatch):
    """Counting and listing share one read: the page is fetched by the ids counted."""
    monkeypatch.setattr(IdempotencyRecordAdmin, "list_per_page", 2)
    IdempotencyRecordFactory.create_batch(3, completed=True)
    wanted = IdempotencyRecordFactory.create_batch(3)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST, {"status__exact": Status.IN_PROGRESS})
    assert response.context["cl"].result_count == 3
    table = IdempotencyRecord._meta.db_table
    reads = [q["sql"] for q in captured.captured_queries if table in q["sql"]]
    assert len(reads) == 2
    assert "'in_progress'" in reads[0] or "in_progress" in reads[0]  # the ids, counted
    assert "in_progress" in reads[1] and " IN (" in reads[1]  # the page, by id
    assert [r.pk for r in response.context["cl"].result_list] == [wanted[2].pk, wanted[1].pk]


def test_paginator_counts_a_short_list_exactly():
    IdempotencyRecordFactory.create_batch(3)
    IdempotencyRecordFactory(completed=True)
    queryset = IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).order_by("-pk")
    paginator = BoundedCountPaginator(queryset, 2)
    assert paginator.count == 3
    assert paginator.count_text == "3"
    assert paginator.num_pages == 2
    assert len(paginator.page(2).object_list) == 1


# transaction=True: ANALYZE TABLE commits on MariaDB, and the table is emptied after.
@pytest.mark.django_db(transaction=True)
def test_paginator_estimates_the_unfiltered_table_on_postgresql_and_mariadb():
    IdempotencyRecordFactory.create_batch(7)
    with connection.cursor() as cursor:
        table = IdempotencyRecord._meta.db_table
        if connection.vendor == "mysql":
            # OPTIMIZE rebuilds, then analyses: ANALYZE alone samples pages that
            # earlier tests' deleted rows (not yet purged) leave empty, and may say 0.
            cursor.execute(f"OPTIMIZE TABLE {table}")
            cursor.fetchall()
        else:
            cursor.execute(f"ANALYZE {table}")
    paginator = BoundedCountPaginator(IdempotencyRecord.objects.order_by("pk"), 100)
    paginator.estimate_above = 5
    with CaptureQueriesContext(connection) as captured:
        count = paginator.count
    sql = " ".join(query["sql"] for query in captured.captured_queries)
    if connection.vendor == "postgresql":
        assert "reltuples" in sql
        assert count == 7
        assert paginator.count_text == "about 7"
    elif connection.vendor == "mysql":
        assert "TABLE_ROWS" in sql
        assert count >= 5  # InnoDB's estimate
        assert paginator.count_text.startswith("about ")
    else:
        assert count == 7
        assert paginator.count_text == "7"
    assert "COUNT(" not in sql


def test_select_all_across_pages_is_not_offered(admin_client, monkeypatch):
    monkeypatch.setattr(IdempotencyRecordAdmin, "list_per_page", 2)
    IdempotencyRecordFactory.create_batch(3, completed=True)
    content = admin_client.get(CHANGELIST).content.decode()
    assert "Select all 3" not in content
    assert 'class="question' not in content


# The detail page


def test_detail_pretty_prints_a_json_body(admin_client):
    record = completed(json.dumps({"id": 41, "items": [1, 2]}).encode(), "application/json")
    content = admin_client.get(change_url(record)).content.decode()
    assert (
        '<pre class="idempotency-body">{\n  &quot;id&quot;: 41,\n  &quot;items&quot;: [' in content
    )


def test_detail_shows_a_deeply_nested_json_body_as_text(admin_client):
    body = "[" * 100_000 + "]" * 100_000
    record = completed(body.encode(), "application/json")
    response = admin_client.get(change_url(record))
    assert response.status_code == 200
    assert f'<pre class="idempotency-body">{body}</pre>' in response.content.decode()


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


def test_detail_escapes_invisible_characters_in_headers(admin_client):
    value = "a\u2028b\u2029c\u202ed\x1be\x7ff\u200bg"
    record = completed(b"{}", "application/json", {"X-Odd\u2028": value})
    response = admin_client.get(change_url(record))
    assert response.status_code == 200
    content = response.content.decode()
    assert (
        "<tr><th>X-Odd\\u2028</th><td>a\\u2028b\\u2029c\\u202ed\\x1be\\x7ff\\u200bg</td></tr>"
        in (content)
    )
    for character in "\u2028\u2029\u202e\x1b\x7f\u200b":
        assert character not in content


def test_detail_escapes_invisible_characters_in_a_text_body(admin_client):
    record = completed("line one\n\tévil\u202etxt.exe\u2028".encode(), "text/plain")
    content = admin_client.get(change_url(record)).content.decode()
    assert '<pre class="idempotency-body">line one\n\tévil\\u202etxt.exe\\u2028</pre>' in content


@pytest.mark.parametrize("headers", [["Content-Type", "text/plain"], "text/plain", 7, {"X-N": 7}])
def test_detail_survives_headers_that_are_not_a_dict_of_strings(admin_client, headers):
    record = IdempotencyRecordFactory(
        completed=True, response_body=b"body", response_headers=headers
    )
    response = admin_client.get(change_url(record))
    assert response.status_code == 200


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
        scope="<script>alert(2)</script>",
        path="/<script>alert(3)</script>/",
        extra_headers={"X-Evil": "<script>alert(4)</script>"},
    )
    content = admin_client.get(change_url(record)).content.decode()
    assert "<script>alert(" not in content
    if content_type:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in content


def test_changelist_escapes_stored_scopes_and_paths(admin_client):
    IdempotencyRecordFactory(scope="<script>alert(1)</script>", path="/<b>x</b>/")
    content = admin_client.get(CHANGELIST).content.decode()
    assert "<script>alert(1)" not in content
    assert "<b>x</b>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


# Who sees a stored body


SECRET_BODY = json.dumps({"one_time_code": "493-211"}).encode()


def test_staff_with_only_the_view_permission_see_size_and_type_not_the_body(client):
    record = completed(SECRET_BODY, "application/json", {"Location": "/codes/1/"})
    staff(client, "viewer", "view_idempotencyrecord")
    response = client.get(change_url(record))
    assert response.status_code == 200
    content = response.content.decode()
    assert "493-211" not in content
    assert "/codes/1/" not in content  # the headers are part of the response
    assert f"{len(SECRET_BODY)} bytes (application/json)." in content
    assert "Can view stored response bodies" in content
    assert "201 Created" in content  # the status stays


def test_the_body_permission_shows_the_body_and_headers(client):
    record = completed(SECRET_BODY, "application/json", {"Location": "/codes/1/"})
    staff(client, "reader", "view_idempotencyrecord", "view_response_body")
    content = client.get(change_url(record)).content.decode()
    assert "493-211" in content
    assert "<tr><th>Location</th><td>/codes/1/</td></tr>" in content


def test_the_body_permission_is_declared_with_its_name():
    permission = Permission.objects.get(codename="view_response_body")
    assert permission.content_type.app_label == "idempotency"
    assert permission.name == "Can view stored response bodies"


def test_superusers_see_bodies_without_the_permission_granted(admin_client):
    record = completed(SECRET_BODY, "application/json")
    assert "493-211" in admin_client.get(change_url(record)).content.decode()


def test_a_sensitive_record_is_shown_as_encrypted_never_decoded(admin_client):
    ciphertext = b"v1:" + bytes(range(200))
    record = IdempotencyRecordFactory(
        completed=True,
        sensitive=True,
        response_body=ciphertext,
        response_headers={"Content-Type": "text/plain", "Location": "/secret/"},
    )
    response = admin_client.get(change_url(record))
    assert response.status_code == 200
    content = response.content.decode()
    assert f"Encrypted ({len(ciphertext)} bytes)" in content
    assert "only a retry presenting the key can read them" in content
    assert "idempotency-body" not in content
    assert "/secret/" not in content
    assert "Encrypted with the body." in content


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
    record = keyed("original", completed=True, response_status=201)
    response = admin_client.post(
        change_url(record), {"key": "changed", "status": Status.IN_PROGRESS, "response_status": 500}
    )
    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.key, record.status, record.response_status, record.version) == (
        digest("original"),
        Status.COMPLETED,
        201,
        2,
    )


# Releasing: every way of removing a record is the versioned release


def action_post(records, **extra):
    return {"action": "release_records", "_selected_action": [r.pk for r in records], **extra}


def versions(*records):
    return [f"{r.pk}:{r.version}" for r in records]


def deletions():
    return list(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True))


def test_release_action_asks_for_confirmation_first(admin_client):
    stuck = keyed("stuck", lock_expired=True)
    other = keyed("other")
    response = admin_client.post(CHANGELIST, action_post([stuck]))
    assert response.status_code == 200
    assert (
        response.templates[0].name
        == "admin/idempotency/idempotencyrecord/release_confirmation.html"
    )
    content = response.content.decode()
    assert shown(stuck.key) in content
    assert stuck.key not in content
    assert f'name="version" value="{stuck.pk}:{stuck.version}"' in content
    assert 'name="post" value="yes"' in content
    assert IdempotencyRecord.objects.filter(pk__in=[stuck.pk, other.pk]).count() == 2


def test_release_action_deletes_exactly_the_selected_records_and_logs_each(admin_client):
    first = IdempotencyRecordFactory(completed=True)
    second = IdempotencyRecordFactory(lock_expired=True)
    kept = IdempotencyRecordFactory(completed=True)
    response = admin_client.post(
        CHANGELIST,
        action_post([first, second], post="yes", version=versions(first, second)),
        follow=True,
    )
    assert response.status_code == 200
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    assert "Released 2 idempotency records." in messages_of(response)
    assert sorted(deletions()) == sorted([str(first.pk), str(second.pk)])
    entry = LogEntry.objects.get(object_id=str(first.pk))
    assert entry.object_repr == f"{first.scope} {shown(first.key)}"


def test_release_action_keeps_a_record_that_changed_since_the_confirmation(admin_client):
    record = IdempotencyRecordFactory(completed=True)
    stale = versions(record)
    IdempotencyRecord.objects.filter(pk=record.pk).update(version=record.version + 1)
    response = admin_client.post(
        CHANGELIST, action_post([record], post="yes", version=stale), follow=True
    )
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
    messages = messages_of(response)
    assert "Released 0 idempotency records." in messages
    assert "1 record changed since the confirmation and was kept." in messages
    assert deletions() == []


def test_release_action_keeps_a_record_whose_lock_is_live(admin_client):
    running = IdempotencyRecordFactory()  # in progress, locked for another minute
    done = IdempotencyRecordFactory(completed=True)
    response = admin_client.post(
        CHANGELIST,
        action_post([running, done], post="yes", version=versions(running, done)),
        follow=True,
    )
    assert IdempotencyRecord.objects.filter(pk=running.pk).exists()
    assert not IdempotencyRecord.objects.filter(pk=done.pk).exists()
    messages = messages_of(response)
    assert "Released 1 idempotency record." in messages
    assert any(
        m.startswith("1 record is still running under a live lock and was kept") for m in messages
    )
    assert deletions() == [str(done.pk)]


def test_release_confirmation_warns_that_a_running_record_will_be_kept(admin_client):
    running = IdempotencyRecordFactory()
    content = admin_client.post(CHANGELIST, action_post([running])).content.decode()
    assert "Still running under a live lock: it will be kept." in content


def test_release_action_refuses_more_than_its_limit(admin_client, monkeypatch):
    monkeypatch.setattr(IdempotencyRecordAdmin, "release_limit", 2)
    records = IdempotencyRecordFactory.create_batch(3, completed=True)
    response = admin_client.post(
        CHANGELIST, action_post(records, post="yes", version=versions(*records)), follow=True
    )
    assert IdempotencyRecord.objects.count() == 3
    assert any("Select at most 2 records" in m for m in messages_of(response))


def test_release_action_is_offered_only_with_delete_permission(client):
    record = IdempotencyRecordFactory(completed=True)
    viewer = staff(client, "viewer", "view_idempotencyrecord")
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "release_records" not in response.content.decode()
    client.post(CHANGELIST, action_post([record], post="yes", version=versions(record)))
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()

    viewer.user_permissions.add(Permission.objects.get(codename="delete_idempotencyrecord"))
    viewer = User.objects.get(pk=viewer.pk)  # a fresh permission cache
    client.force_login(viewer)
    assert "release_records" in client.get(CHANGELIST).content.decode()


def test_default_delete_selected_action_is_neither_offered_nor_run(admin_client):
    running = IdempotencyRecordFactory()
    content = admin_client.get(CHANGELIST).content.decode()
    assert 'value="release_records"' in content
    assert 'value="delete_selected"' not in content
    admin_client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [running.pk], "post": "yes"},
    )
    assert IdempotencyRecord.objects.filter(pk=running.pk).exists()


def test_delete_page_asks_for_confirmation_with_the_version(admin_client):
    record = IdempotencyRecordFactory(completed=True)
    response = admin_client.get(delete_url(record))
    assert response.status_code == 200
    content = response.content.decode()
    assert f'name="version" value="{record.pk}:{record.version}"' in content
    assert 'name="action"' not in content
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_page_releases_a_completed_record_and_logs_it(admin_client):
    record = IdempotencyRecordFactory(completed=True)
    response = admin_client.post(
        delete_url(record), {"post": "yes", "version": versions(record)}, follow=True
    )
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()
    assert deletions() == [str(record.pk)]
    assert f"Released the idempotency record “{record}”." in messages_of(response)


def test_delete_page_never_removes_a_record_whose_request_is_running(admin_client):
    running = IdempotencyRecordFactory()  # in progress under a live lock
    response = admin_client.post(
        delete_url(running), {"post": "yes", "version": versions(running)}, follow=True
    )
    assert IdempotencyRecord.objects.filter(pk=running.pk).exists()
    assert deletions() == []
    messages = messages_of(response)
    assert "Released 0 idempotency records." in messages
    assert any(m.startswith("1 record is still running under a live lock") for m in messages)


def test_delete_page_releases_a_record_whose_lock_expired(admin_client):
    stuck = IdempotencyRecordFactory(lock_expired=True)
    admin_client.post(delete_url(stuck), {"post": "yes", "version": versions(stuck)})
    assert not IdempotencyRecord.objects.filter(pk=stuck.pk).exists()


def test_delete_page_keeps_a_record_changed_since_the_confirmation(admin_client):
    record = IdempotencyRecordFactory(lock_expired=True)
    stale = versions(record)
    IdempotencyRecord.objects.filter(pk=record.pk).update(version=record.version + 1)
    response = admin_client.post(delete_url(record), {"post": "yes", "version": stale}, follow=True)
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
    assert "1 record changed since the confirmation and was kept." in messages_of(response)


def test_delete_page_without_a_confirmed_version_only_asks_again(admin_client):
    record = IdempotencyRecordFactory(completed=True)
    response = admin_client.post(delete_url(record), {"post": "yes"})
    assert response.status_code == 200
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_page_needs_the_delete_permission(client):
    record = IdempotencyRecordFactory(completed=True)
    staff(client, "viewer", "view_idempotencyrecord")
    response = client.post(delete_url(record), {"post": "yes", "version": versions(record)})
    assert response.status_code == 403
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_delete_model_and_delete_queryset_are_the_versioned_release(rf, admin_user):
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[IdempotencyRecord]
    request = rf.post("/")
    request.user = admin_user
    running, done, stale = (
        IdempotencyRecordFactory(),
        IdempotencyRecordFactory(completed=True),
        IdempotencyRecordFactory(completed=True),
    )
    IdempotencyRecord.objects.filter(pk=stale.pk).update(version=stale.version + 1)
    model_admin.delete_model(request, running)
    model_admin.delete_model(request, stale)  # read before the update above
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {
        running.pk,
        done.pk,
        stale.pk,
    }
    model_admin.delete_queryset(request, IdempotencyRecord.objects.all())
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {running.pk}
    assert sorted(deletions()) == sorted([str(done.pk), str(stale.pk)])


# The indexes the admin added keep the store's completion a HOT update


COMPLETION_COLUMNS = {
    "status",
    "response_status",
    "response_headers",
    "response_body",
    "version",
    "locked_until",
}


def test_no_index_covers_a_column_the_completion_writes():
    meta = IdempotencyRecord._meta
    indexed = set()
    for index in [*meta.indexes, *meta.constraints]:
        indexed.update(getattr(index, "fields", ()) or ())
        condition = getattr(index, "condition", None)
        assert condition is None, f"{index.name} has a predicate"
        assert not getattr(index, "expressions", ()), f"{index.name} indexes an expression"
    assert indexed.isdisjoint(COMPLETION_COLUMNS)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_completing_a_record_is_a_hot_update_on_postgresql():
    """The completion UPDATE of the store, on a record of this table, writes no index."""
    record = IdempotencyRecordFactory()
    table = IdempotencyRecord._meta.db_table

    def updates(cursor):
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
            [table],
        )
        return cursor.fetchone()

    with connection.cursor() as cursor:
        before = updates(cursor)
        cursor.execute(
            f"UPDATE {table} SET status = %s, response_status = %s, response_headers = %s, "
            "response_body = %s, version = version + 1, locked_until = NULL "
            "WHERE id = %s AND version = %s",
            [Status.COMPLETED.value, 201, '{"Content-Type": "application/json"}', b"{}",
             record.pk, record.version],
        )  # fmt: skip
        after = updates(cursor)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_changelist_says_when_the_records_are_kept_in_redis(admin_client, settings):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"}

    page = admin_client.get(CHANGELIST).content.decode()

    assert "New records are kept in Redis" in page
    settings.IDEMPOTENCY = {}
    assert "kept in Redis" not in admin_client.get(CHANGELIST).content.decode()
