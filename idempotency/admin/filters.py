"""The list filters, each a condition the database answers without a full count.

``status`` is Django's own choices filter. Expiry is compared with the
database's clock, as the store decides it; response statuses by class.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from idempotency.stores.dialects import DatabaseNow


class ExpiredFilter(admin.SimpleListFilter):
    """Expired or not, by the database's clock, as the store decides it.

    The list it leaves is ordered by expiry (``get_ordering`` of the admin),
    which the ``expires_at`` index serves; newest ids first would walk the
    primary key past every record on the other side of now.
    """

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


# 5xx is not offered: a 5xx response is never stored (contract section 3),
# so that choice would always be empty, found so by reading every row.
STATUS_CLASSES = {"2xx": 200, "3xx": 300, "4xx": 400}


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
