"""Deleting a ``VersionedModel`` in the admin: only at the version the user confirmed.

Django's delete confirmation page and its ``delete_selected`` action delete
the object as it is when the user presses "Yes", whatever changed after the
page was shown. ``VersionedModelAdmin`` (idempotency/versioning_admin.py)
renders both confirmation pages with the version of each object shown
(templates admin/idempotency/versioning/) and, with the helpers here, deletes
only if every object is still at that version:

- one object: ``VersionedModel.delete()`` at the version posted, whose
  conditional ``UPDATE`` checks it and locks the row before Django's delete;
- a selection: one ``UPDATE ... SET version = version + 1 WHERE (pk IN (...)
  AND version = %s) OR ...`` over the selected rows, which must match them
  all, then Django's delete, in one transaction.

A row that moved on raises ``StaleObjectError``: the admin's transaction
(its ``LogEntry`` rows included) is rolled back and the user gets an error
message. A confirmation posted without the versions (a page rendered before
this existed, a template that does not carry them) deletes nothing and shows
the confirmation page again.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db import router, transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from idempotency.versioning import VERSION, StaleObjectError, _version_table

__all__ = ["delete_selected", "lock_versions", "posted_version", "posted_versions"]

STALE_DELETE_MESSAGE = _(
    "Someone else changed this object after the deletion page was shown, so it was "
    "not deleted. Look at it again, then confirm the deletion again if you still want it."
)
STALE_SELECTION_MESSAGE = _(
    "Someone else changed or deleted some of the selected objects after the "
    "confirmation page was shown, so nothing was deleted. Select them again to "
    "delete them as they are now."
)
UNCONFIRMED_MESSAGE = _(
    "This deletion came from a page that did not show the version of what it deletes, "
    "so nothing was deleted. Confirm it again on this page."
)

# A version is a PositiveIntegerField; longer strings are not one.
_MAX_DIGITS = 10


def _as_version(value: str | None) -> int | None:
    if not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)  # 0 included: a PositiveIntegerField holds it


def posted_version(request: HttpRequest) -> int | None:
    """The version the delete confirmation page showed, or ``None`` if the POST lacks it."""
    return _as_version(request.POST.get(VERSION))


def posted_versions(request: HttpRequest) -> dict[str, int] | None:
    """Each selected pk (as posted) with the version its confirmation page showed.

    ``None`` when a selected object's version is missing: the page that was
    confirmed did not show it.
    """
    shown: dict[str, int] = {}
    for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
        version = _as_version(request.POST.get(f"{VERSION}-{pk}"))
        if version is None:
            return None
        shown[pk] = version
    return shown or None


def lock_versions(queryset: QuerySet[Any], shown: dict[str, int], using: str) -> None:
    """Check that the queryset's rows are exactly those shown, at the versions shown.

    One ``UPDATE`` adds 1 to their versions and locks them until the enclosing
    transaction ends, so the delete that follows deletes them as confirmed.
    ``StaleObjectError`` when a row moved on or is gone; the caller's
    transaction must then be rolled back (the ``UPDATE`` may have matched
    some rows).
    """
    model = queryset.model
    objects = list(queryset)  # the rows read for this request (Django's action read them)
    read = {str(obj.pk): obj for obj in objects}
    for pk, version in shown.items():
        obj = read.get(pk)
        if obj is None or obj.version != version:  # changed before this request read it
            raise StaleObjectError(model, obj.pk if obj else pk, version)
    if len(read) != len(shown):  # rows this page did not show
        extra = next(obj for pk, obj in read.items() if pk not in shown)
        raise StaleObjectError(model, extra.pk, extra.version)
    by_version: dict[int, list[Any]] = defaultdict(list)
    for pk, version in shown.items():
        by_version[version].append(read[pk].pk)
    matches = functools.reduce(
        operator.or_, (Q(pk__in=pks, **{VERSION: v}) for v, pks in by_version.items())
    )
    table = _version_table(model)._base_manager.using(using)
    if table.filter(matches).update(**{VERSION: F(VERSION) + 1}) != len(objects):
        # Changed between this request's read and the UPDATE. Which row is
        # not known without another read; the first one stands for them.
        pk, version = next(iter(shown.items()))
        raise StaleObjectError(model, read[pk].pk, version)


@admin.action(
    permissions=["delete"],
    description=_("Delete selected %(verbose_name_plural)s"),
)
def delete_selected(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    """Django's ``delete_selected``, deleting nothing unless every row is at the version shown."""
    if not request.POST.get("post"):  # the confirmation page
        return django_delete_selected(modeladmin, request, queryset)
    if posted_versions(request) is None:
        modeladmin.message_user(request, UNCONFIRMED_MESSAGE, messages.WARNING)
        return django_delete_selected(modeladmin, _asking_again(request), queryset)
    try:
        # Django logs the deletions before it deletes; a refused delete
        # (VersionedModelAdmin.delete_queryset) rolls the log back with it.
        with transaction.atomic(using=router.db_for_write(modeladmin.model)):
            return django_delete_selected(modeladmin, request, queryset)
    except StaleObjectError:
        modeladmin.message_user(request, modeladmin.stale_selection_message, messages.ERROR)
        return None  # the change list again, as after a deletion


def _asking_again(request: HttpRequest) -> HttpRequest:
    # Django's action shows its confirmation page when "post" is absent.
    again = copy.copy(request)
    post = request.POST.copy()
    post.pop("post", None)
    again.POST = post  # type: ignore[assignment]  # a mutable copy, as Django's own views do
    return again
