"""Releasing records from the admin: the action, the per-object delete page, the messages.

Every way Django offers to remove a record (the changelist action, the
"Delete" button of a record, ``delete_model``, ``delete_queryset``) ends in
``removal.remove``: removed only at the version the user confirmed and never
under a live lock. A LogEntry is written for each record actually removed,
in the transaction of its DELETE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from idempotency.admin.removal import Kept, Removal, confirmed_versions, remove
from idempotency.keys import shown
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.dialects import DatabaseNow

if TYPE_CHECKING:
    RecordModelAdmin = admin.ModelAdmin[IdempotencyRecord]
else:  # generic only in django-stubs
    RecordModelAdmin = admin.ModelAdmin

CONFIRMATION_TEMPLATE = "admin/idempotency/idempotencyrecord/release_confirmation.html"


class ReleaseAdmin(RecordModelAdmin):
    """The release flow of ``IdempotencyRecordAdmin``."""

    # A page at most: every record is one hidden field and one DELETE, and
    # the confirmation lists each. Emptying the table is the purge's work.
    release_limit = 100

    @admin.action(description=_("Release selected records"), permissions=["delete"])
    def release_records(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]
    ) -> TemplateResponse | None:
        """Delete the selected records, each only if unchanged and not running.

        The confirmation page carries every record's version; a record taken
        over or completed since then has another version and is kept, and so
        is a record whose request is running under a live lock.
        """
        records = list(queryset.order_by("pk")[: self.release_limit + 1])
        if len(records) > self.release_limit:
            self.message_user(request, self._too_many(), messages.ERROR)
            return None
        if request.POST.get("post") == "yes":
            confirmed = confirmed_versions(request.POST.getlist("version"))
            selected = {record.pk: record for record in records}
            self._release(
                request, selected, {pk: v for pk, v in confirmed.items() if pk in selected}
            )
            return None
        return self._confirmation(request, records, action=True)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The "Delete" button of a record: the same confirmation and the same removal."""
        record = self.get_object(request, unquote(object_id))
        if not self.has_delete_permission(request, record):
            raise PermissionDenied
        if record is None:
            missing: HttpResponse = self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
            return missing
        confirmed = confirmed_versions(request.POST.getlist("version"))
        if (
            request.method == "POST"
            and request.POST.get("post") == "yes"
            and record.pk in confirmed
        ):
            self._release(request, {record.pk: record}, {record.pk: confirmed[record.pk]})
            return HttpResponseRedirect(self._changelist_url(request))
        return self._confirmation(request, [record], action=False)

    def delete_model(self, request: HttpRequest, obj: IdempotencyRecord) -> None:
        """Remove ``obj`` at the version it was read at, as the release does."""
        self._release(request, {obj.pk: obj}, {obj.pk: obj.version}, quiet=True)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]) -> None:
        """Remove each record at the version read now, as the release does."""
        records = {record.pk: record for record in queryset}
        versions = {pk: record.version for pk, record in records.items()}
        self._release(request, records, versions, quiet=True)

    def _release(
        self,
        request: HttpRequest,
        records: Mapping[int, IdempotencyRecord],
        confirmed: Mapping[int, int],
        quiet: bool = False,
    ) -> Removal:
        alias = self.get_queryset(request).db
        with transaction.atomic(using=alias):
            removal = remove(alias, confirmed)
            # After the DELETE, unlike Django's own delete views, which log
            # first: only records actually removed are logged.
            if removal.removed:
                removed = [records[pk] for pk in removal.removed]
                # A list, as Django's own delete_view passes ([obj]); the stubs say QuerySet.
                self.log_deletions(request, removed)  # type: ignore[arg-type]
        if not quiet:
            self._report(request, records, removal, unconfirmed=len(records) - len(confirmed))
        return removal

    def _report(
        self,
        request: HttpRequest,
        records: Mapping[int, IdempotencyRecord],
        removal: Removal,
        unconfirmed: int,
    ) -> None:
        released = len(removal.removed)
        if len(records) == 1 and released == 1:
            (record,) = records.values()
            text = gettext("Released the idempotency record “%(record)s”.") % {"record": record}
        else:
            text = ngettext(
                "Released %(count)d idempotency record.",
                "Released %(count)d idempotency records.",
                released,
            ) % {"count": released}
        self.message_user(request, text, messages.SUCCESS if released else messages.WARNING)
        reasons = list(removal.kept.values())
        for reason in Kept:
            count = reasons.count(reason)
            if count:
                self.message_user(request, _kept_message(reason, count), messages.WARNING)
        if unconfirmed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d record was not on the confirmation page and was kept.",
                    "%(count)d records were not on the confirmation page and were kept.",
                    unconfirmed,
                )
                % {"count": unconfirmed},
                messages.WARNING,
            )

    def _confirmation(
        self, request: HttpRequest, records: list[IdempotencyRecord], action: bool
    ) -> TemplateResponse:
        opts = self.model._meta
        running = self._running(request, records)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Release idempotency records?"),
            "subtitle": None,
            "records": records,
            "rows": [(record, shown(record.key), record.pk in running) for record in records],
            "from_action": action,
            "opts": opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
            "changelist_url": self._changelist_url(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, CONFIRMATION_TEMPLATE, context)

    def _running(self, request: HttpRequest, records: list[IdempotencyRecord]) -> set[int]:
        """Which records hold a live lock now, by the database's clock (for the page only:
        the removal decides again)."""
        return set(
            self.get_queryset(request)
            .filter(
                pk__in=[record.pk for record in records],
                status=Status.IN_PROGRESS,
                locked_until__gt=DatabaseNow(),
            )
            .values_list("pk", flat=True)
        )

    def _changelist_url(self, request: HttpRequest) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse("admin:{}_{}_changelist".format(*info), current_app=self.admin_site.name)

    def _too_many(self) -> str:
        return gettext(
            "Select at most %(limit)d records to release; expired records are removed by "
            "the purge_idempotency_keys command."
        ) % {"limit": self.release_limit}


def _kept_message(reason: Kept, count: int) -> str:
    if reason is Kept.RUNNING:
        text = ngettext(
            "%(count)d record is still running under a live lock and was kept: a record is "
            "released only once its request has finished or its lock has expired.",
            "%(count)d records are still running under a live lock and were kept: a record is "
            "released only once its request has finished or its lock has expired.",
            count,
        )
    elif reason is Kept.CHANGED:
        text = ngettext(
            "%(count)d record changed since the confirmation and was kept.",
            "%(count)d records changed since the confirmation and were kept.",
            count,
        )
    else:
        text = ngettext(
            "%(count)d record had already been removed.",
            "%(count)d records had already been removed.",
            count,
        )
    return text % {"count": count}
