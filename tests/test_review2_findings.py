"""Defects found by the second adversarial review (review2).

Each test asserts the correct behaviour and fails on main at the time of the review.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient
from django.urls import path

from idempotency import idempotent
from idempotency.models import IdempotencyRecord
from idempotency.versioning_admin import VersionedModelAdmin
from tests.testapp.models import Article, Charge
from tests.turns import GATES, gate, waits_seen

# ---------------------------------------------------------------- the views

review_site = admin.AdminSite(name="review2admin")


review_site.register(Article, VersionedModelAdmin)


@idempotent
def rolls_back_default_view(request: HttpRequest) -> HttpResponse:
    Charge.objects.using("default").create(amount=1, label="rolled back")
    transaction.set_rollback(True, using="default")
    return JsonResponse({"ok": False}, status=201)


@idempotent
async def async_gated_view(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body or b"{}")
    charge = await Charge.objects.acreate(amount=1, label=body["label"])
    if body.get("gate"):
        await GATES[body["gate"]].pass_through()
    if body.get("fail"):
        raise RuntimeError("the view failed after writing")
    return JsonResponse({"id": charge.pk}, status=201)


urlpatterns = [
    path("r2admin/", review_site.urls),
    path("rolls-back-default/", rolls_back_default_view),
    path("async-gated/", async_gated_view),
]

pytestmark = pytest.mark.urls(__name__)


# ------------------------------------------------------ versioning: admin


def test_list_editable_on_a_versioned_admin_is_refused_at_class_creation() -> None:
    """Django builds the changelist's forms with modelform_factory, not from
    the admin's VersionedModelForm: a list_editable row carries no version and
    would overwrite a change made after the list was shown. Refused loudly."""
    with pytest.raises(TypeError, match="list_editable would save rows without their version"):

        class EditableArticleAdmin(VersionedModelAdmin):
            list_display = ("id", "title")
            list_editable = ("title",)


@pytest.mark.django_db
def test_admin_delete_of_a_versioned_object_changed_after_its_confirmation_is_refused(
    admin_client: Any,
) -> None:
    article = Article.objects.create(title="original", body="")
    page = admin_client.get(f"/r2admin/testapp/article/{article.pk}/delete/")
    assert page.status_code == 200
    theirs = Article.objects.get(pk=article.pk)
    theirs.title = "an important change made after the confirmation was shown"
    theirs.save()

    admin_client.post(f"/r2admin/testapp/article/{article.pk}/delete/", {"post": "yes"})

    assert Article.objects.filter(pk=article.pk).exists()


# ------------------------------------------------ several databases


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
def test_a_rolled_back_view_with_records_in_another_database_releases_the_key(
    client: Any, settings: Any
) -> None:
    from tests.conftest import atomic_requests_set

    settings.IDEMPOTENCY = {"DATABASE": "other"}
    with atomic_requests_set(True):
        first = client.post("/rolls-back-default/", HTTP_IDEMPOTENCY_KEY="k-rollback")
        assert first.status_code == 201
        assert Charge.objects.using("default").count() == 0  # rolled back
        retry = client.post("/rolls-back-default/", HTTP_IDEMPOTENCY_KEY="k-rollback")

    # The view's writes were rolled back: the retry must run it again (as when
    # the records live in the same database), not be told 409 for LOCK_TIMEOUT.
    assert retry.status_code == 201, retry.content
    assert not IdempotencyRecord.objects.using("other").filter(status="in_progress").exists()


# ------------------------------------------------------------ async views


@pytest.mark.django_db(transaction=True)
def test_concurrent_async_requests_do_not_share_one_transaction() -> None:
    """Two async requests with different keys in one event loop (AsyncClient), the
    first failing after its write while the second completes. Both requests'
    store units run on one thread-sensitive thread, so on one connection: the
    second used to run inside the first's atomic block, be answered 201, and
    have its write and its record rolled back with the first request. Now the
    second waits for its turn until the first has rolled back."""

    async def scenario() -> tuple[int, int, bool]:
        # A raised exception is each concurrent request's 500, not re-raised
        # by every request the client is serving at that moment.
        client = AsyncClient(raise_request_exception=False)
        with waits_seen() as waits, gate("fails") as fails_gate:
            slow = asyncio.ensure_future(client.post(
                "/async-gated/", {"label": "fails", "gate": "fails", "fail": True},
                content_type="application/json", headers={"Idempotency-Key": "k-fails"},
            ))  # fmt: skip
            await fails_gate.entered()  # the first holds its key, its write made
            ok = asyncio.ensure_future(client.post(
                "/async-gated/", {"label": "succeeds"},
                content_type="application/json", headers={"Idempotency-Key": "k-succeeds"},
            ))  # fmt: skip
            waited = await waits.reach(1)  # the second is seen waiting for its turn
            fails_gate.open()
            return (await slow).status_code, (await ok).status_code, waited

    failed, succeeded, waited = async_to_sync(scenario)()

    assert (failed, succeeded) == (500, 201)
    # The request answered 201 must have its write and its record committed.
    assert list(Charge.objects.values_list("label", flat=True)) == ["succeeds"]
    assert IdempotencyRecord.objects.filter(status="completed").count() == 1
    assert not IdempotencyRecord.objects.filter(status="in_progress").exists()
    assert waited
