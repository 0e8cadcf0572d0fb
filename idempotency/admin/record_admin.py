"""``IdempotencyRecordAdmin``: the list, the search, the detail page and who sees what.

Records are written only by the store, so the admin never edits them (its
permission methods say so); removing one is the release of ``release.py``.
Keys are never shown, only the first characters of their digest
(``idempotency.keys.shown``). Stored bodies are shown only to users with the
``idempotency.view_response_body`` permission, and never for a sensitive
(encrypted) record. docs/admin.md describes the pages and their measured costs.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from idempotency.admin import bodies, search
from idempotency.admin.filters import ExpiredFilter, ResponseStatusClassFilter
from idempotency.admin.pagination import BoundedCountPaginator
from idempotency.admin.release import ReleaseAdmin
from idempotency.conf import idempotency_settings
from idempotency.functions import METHOD as FUNCTION_METHOD
from idempotency.keys import shown
from idempotency.models import IdempotencyRecord, Status

BODY_PERMISSION = "idempotency.view_response_body"

REQUEST_FIELDS = (
    "scope",
    "shown_key",
    "status",
    "request_line",
    "fingerprint",
    "version",
    "created_at",
    "expires_at",
    "locked_until",
    "response_status_text",
)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReleaseAdmin):
    list_display = (
        "shown_key",
        "scope",
        "status",
        "request_line",
        "response_status",
        "created_at",
        "expires_at",
    )
    list_filter = ("status", ExpiredFilter, ResponseStatusClassFilter)
    search_fields = ("key", "scope", "path")  # see get_search_results
    search_help_text = _("An exact key or scope, or the beginning of a path.")
    # Sorting by a column would sort the table (most columns have no index).
    sortable_by = ()
    # The primary key follows insertion order and is indexed: the newest
    # records first without sorting the table.
    ordering = ("-pk",)
    paginator = BoundedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["release_records"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        if idempotency_settings.STORE == "redis":
            # Say so, or an empty list reads as "nothing is protected".
            messages.info(request, gettext(
                'New records are kept in Redis (IDEMPOTENCY["STORE"] is "redis"): this page '
                "lists only records kept in the database before. Inspect a Redis record with "
                "redis-cli (docs/redis.md); Redis records expire by themselves."
            ))  # fmt: skip
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyRecord]:
        # The records live where the store keeps them, never on a replica.
        return super().get_queryset(request).using(idempotency_settings.DATABASE)

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        if request.GET.get(ExpiredFilter.parameter_name) in ("yes", "no"):
            return ("-expires_at",)  # the expires_at index, from the newest expiry
        return tuple(self.ordering or ())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord], search_term: str
    ) -> tuple[QuerySet[IdempotencyRecord], bool]:
        return search.matching(queryset, search_term), False

    def get_fields(self, request: HttpRequest, obj: IdempotencyRecord | None = None) -> Any:
        if self.can_view_bodies(request):
            return (*REQUEST_FIELDS, "response_headers_table", "stored_response")
        return (*REQUEST_FIELDS, "response_summary")

    def get_readonly_fields(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> Any:
        return self.get_fields(request, obj)

    def can_view_bodies(self, request: HttpRequest) -> bool:
        """Stored bodies can hold anything a view answered, one-time secrets included."""
        return request.user.has_perm(BODY_PERMISSION)

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

    @admin.display(description=_("key"))
    def shown_key(self, record: IdempotencyRecord) -> str:
        return shown(record.key)

    @admin.display(description=_("request"))
    def request_line(self, record: IdempotencyRecord) -> str:
        return bodies.visible(f"{record.method} {record.path}")

    @admin.display(description=_("response status"))
    def response_status_text(self, record: IdempotencyRecord) -> str:
        if record.method == FUNCTION_METHOD and record.status == Status.COMPLETED:
            # A function's record keeps its JSON return value, not an HTTP answer.
            return gettext("returned a value (stored as JSON)")
        if record.response_status is None:
            return "-"
        try:
            return f"{record.response_status} {HTTPStatus(record.response_status).phrase}"
        except ValueError:
            return str(record.response_status)

    @admin.display(description=_("response headers"))
    def response_headers_table(self, record: IdempotencyRecord) -> SafeString | str:
        if record.sensitive:
            return gettext("Encrypted with the body.")
        return bodies.render_headers(record.response_headers)

    @admin.display(description=_("stored response"))
    def stored_response(self, record: IdempotencyRecord) -> SafeString:
        return self._response(record, bodies.render_body)

    @admin.display(description=_("stored response"))
    def response_summary(self, record: IdempotencyRecord) -> SafeString:
        return self._response(record, bodies.summarise_body)

    def _response(self, record: IdempotencyRecord, show: Any) -> SafeString:
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
        if record.sensitive:
            return bodies.render_encrypted(bytes(record.response_body))
        result: SafeString = show(bytes(record.response_body), record.response_headers)
        return result
