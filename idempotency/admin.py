"""The admin: records are read-only; stuck ones can be released.

Records are written only by the store, so the admin never edits them. It lists
them cheaply on tables of millions of rows (no full ``COUNT(*)``, filters on
indexed columns) and renders a stored response as text, never as HTML.
docs/admin.md describes the pages and the measured costs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import suppress
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_ngettext
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import parse_header_parameters
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores import Claim, ClaimOutcome
from idempotency.stores.database import DatabaseRecordStore
from idempotency.stores.dialects import DatabaseNow

if TYPE_CHECKING:
    RecordModelAdmin = admin.ModelAdmin[IdempotencyRecord]
    RecordPaginator = Paginator[IdempotencyRecord]
else:  # generic only in django-stubs
    RecordModelAdmin = admin.ModelAdmin
    RecordPaginator = Paginator


class EstimatedCountPaginator(RecordPaginator):
    """A paginator that does not count a large table row by row.

    An unfiltered list on PostgreSQL takes the planner's row estimate
    (``pg_class.reltuples``) once it is above ``estimate_above``; below that,
    and for every filtered list and other database, it counts exactly.
    """

    estimate_above = 100_000

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        return estimate if estimate is not None else super().count

    def _estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or queryset.query.where:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            # reltuples is -1 before the first VACUUM or ANALYZE (PostgreSQL 14+).
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table]
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < self.estimate_above:
            return None
        return int(row[0])


class ExpiredFilter(admin.SimpleListFilter):
    """Expired or not, by the database's clock, as the store decides it."""

    title = _("expired")
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=DatabaseNow())
        if self.value() == "no":
            return queryset.filter(expires_at__gt=DatabaseNow())
        return None


STATUS_CLASSES = {"2xx": 200, "3xx": 300, "4xx": 400, "5xx": 500}


class ResponseStatusClassFilter(admin.SimpleListFilter):
    title = _("response status")
    parameter_name = "response_status_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [*((name, name) for name in STATUS_CLASSES), ("none", _("None"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value == "none":
            return queryset.filter(response_status__isnull=True)
        if value in STATUS_CLASSES:
            low = STATUS_CLASSES[value]
            return queryset.filter(response_status__gte=low, response_status__lt=low + 100)
        return None


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(RecordModelAdmin):
    list_display = (
        "key",
        "scope",
        "status",
        "request_line",
        "response_status",
        "created_at",
        "expires_at",
    )
    list_filter = ("status", ExpiredFilter, ResponseStatusClassFilter)
    # Exact key and scope (keys are case-sensitive; "=key" would be iexact),
    # path by prefix: a key is pasted from a log or a client report, and a
    # substring search would scan every row.
    search_fields = ("key__exact", "scope__exact", "path__startswith")
    search_help_text = _("An exact key or scope, or the beginning of a path.")
    date_hierarchy = "created_at"
    # The primary key follows insertion order and is indexed: the newest
    # records first without sorting the table.
    ordering = ("-pk",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["release_records"]
    fields = (
        "scope",
        "key",
        "status",
        "request_line",
        "fingerprint",
        "version",
        "created_at",
        "expires_at",
        "locked_until",
        "response_status_text",
        "response_headers_table",
        "stored_response",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyRecord]:
        # The records live where the store keeps them, never on a replica.
        return super().get_queryset(request).using(idempotency_settings.DATABASE)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 passes action_location (and warns about overrides without
        # it); Django 5.2 does not know it.
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[call-arg]
        # "Release" is the delete of this model: it confirms by version.
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description=_("request"))
    def request_line(self, record: IdempotencyRecord) -> str:
        return f"{record.method} {record.path}"

    @admin.display(description=_("response status"))
    def response_status_text(self, record: IdempotencyRecord) -> str:
        if record.response_status is None:
            return "-"
        try:
            return f"{record.response_status} {HTTPStatus(record.response_status).phrase}"
        except ValueError:
            return str(record.response_status)

    @admin.display(description=_("response headers"))
    def response_headers_table(self, record: IdempotencyRecord) -> SafeString | str:
        headers = record.response_headers or {}
        if not headers:
            return gettext("No headers stored.")
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", sorted(headers.items()))
        return format_html('<table class="idempotency-headers">{}</table>', rows)

    @admin.display(description=_("stored response"))
    def stored_response(self, record: IdempotencyRecord) -> SafeString:
        if record.status == Status.IN_PROGRESS:
            return format_html(
                "<p>{}</p>",
                gettext(
                    "In progress: the first request is still running, or its worker died. "
                    "Locked until {}; after that a retry with the same key takes the record over."
                ).format(record.locked_until),
            )
        if record.response_body is None:
            return format_html(
                "<p>{}</p>",
                gettext(
                    "The response was passed through and not stored (streamed, a file, or "
                    "larger than MAX_STORED_RESPONSE_BYTES); a retry cannot replay it."
                ),
            )
        return render_body(bytes(record.response_body), record.response_headers or {})

    @admin.action(description=_("Release selected records"), permissions=["delete"])
    def release_records(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]
    ) -> TemplateResponse | None:
        """Delete the selected records, each only if unchanged since the confirmation.

        The confirmation page carries every record's version; a record taken
        over or completed since then has another version and is kept, so a
        running request is never released by a stale click.
        """
        if request.POST.get("post") == "yes":
            self._release(request, queryset)
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": _("Release idempotency records?"),
            "subtitle": None,
            "records": list(queryset.order_by("pk")),
            "opts": opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/idempotency/idempotencyrecord/release_confirmation.html", context
        )

    def _release(self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]) -> None:
        confirmed = _confirmed_versions(request.POST.getlist("version"))
        selected = set(queryset.values_list("pk", flat=True))
        store = DatabaseRecordStore(queryset.db)
        released = sum(
            store.release(Claim(ClaimOutcome.ACQUIRED, pk, version))
            for pk, version in confirmed.items()
            if pk in selected
        )
        self.message_user(
            request,
            ngettext("Released %(count)d %(records)s.", "Released %(count)d %(records)s.", released)
            % {"count": released, "records": model_ngettext(self.opts, released)},
            messages.SUCCESS,
        )
        kept = len(selected) - released
        if kept:
            self.message_user(
                request,
                ngettext(
                    "%(count)d record changed since the confirmation and was kept.",
                    "%(count)d records changed since the confirmation and were kept.",
                    kept,
                )
                % {"count": kept},
                messages.WARNING,
            )


def _confirmed_versions(values: list[str]) -> dict[int, int]:
    """``["12:3", ...]`` from the confirmation page -> ``{12: 3}``; junk is ignored."""
    confirmed = {}
    for value in values:
        pk, _, version = value.partition(":")
        if pk.isdigit() and version.isdigit():
            confirmed[int(pk)] = int(version)
    return confirmed


JSON_TYPES = ("application/json", "application/problem+json")
TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def render_body(body: bytes, headers: Mapping[str, str]) -> SafeString:
    """A stored body as escaped text: JSON pretty-printed, text decoded, binary sized."""
    content_type = next(
        (value for name, value in headers.items() if name.lower() == "content-type"), ""
    )
    media_type, params = parse_header_parameters(content_type) if content_type else ("", {})
    if not body:
        return format_html("<p>{}</p>", gettext("An empty body."))
    is_json = media_type in JSON_TYPES or media_type.endswith("+json")
    is_text = (
        is_json
        or media_type.startswith("text/")
        or media_type in TEXT_TYPES
        or media_type.endswith("+xml")
    )
    text = _decode(body, params.get("charset", "utf-8")) if is_text else None
    if text is None:
        return format_html(
            "<p>{}</p>",
            gettext("{size} bytes of binary content ({content_type}), not shown.").format(
                size=len(body), content_type=content_type or gettext("no Content-Type")
            ),
        )
    if is_json:
        with suppress(ValueError):  # not JSON after all: shown as the text it is
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return format_html('<pre class="idempotency-body">{}</pre>', text)


def _decode(body: bytes, charset: str) -> str | None:
    try:
        return body.decode(charset)
    except LookupError:  # an unknown charset name
        return _decode(body, "utf-8") if charset.lower() != "utf-8" else None
    except UnicodeDecodeError:
        return None
