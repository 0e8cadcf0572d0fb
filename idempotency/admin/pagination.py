"""A paginator that never counts a table of millions of rows row by row.

- An unfiltered list of a large table takes the database's own row estimate
  (PostgreSQL ``pg_class.reltuples``, MariaDB/MySQL
  ``information_schema.TABLES.TABLE_ROWS``) and says "about N".
- Any other list reads the ids of its first ``count_limit + 1`` rows, in list
  order: up to ``count_limit`` the count is exact, beyond it the list says
  "more than N". The same ids then serve every page they cover, so a filter
  that matches few rows reads the table once, not once to count and once to
  list.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.formats import number_format
from django.utils.functional import cached_property
from django.utils.translation import gettext

if TYPE_CHECKING:
    from django.core.paginator import Page

    from idempotency.models import IdempotencyRecord

    RecordPaginator = Paginator[IdempotencyRecord]
else:  # generic only in django-stubs
    RecordPaginator = Paginator


class BoundedCountPaginator(RecordPaginator):
    estimate_above = 100_000
    count_limit = 1_000

    # Set by ``count``: "about N" (an estimate) or "more than count_limit".
    approximate = False
    capped = False
    _leading_ids: list[Any] | None = None

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return int(super().count)
        if not queryset.query.where:
            estimate = self._estimate(queryset)
            if estimate is not None:
                self.approximate = True
                return estimate
        ids = list(queryset.values_list("pk", flat=True)[: self.count_limit + 1])
        self._leading_ids = ids
        self.capped = len(ids) > self.count_limit
        return len(ids)

    @property
    def count_text(self) -> str:
        """The count as the list shows it."""
        count = number_format(self.count, force_grouping=True)
        if self.approximate:
            return gettext("about %(count)s") % {"count": count}
        if self.capped:
            limit = number_format(self.count_limit, force_grouping=True)
            return gettext("more than %(count)s") % {"count": limit}
        return count

    @property
    def num_pages(self) -> int:
        return max(1, math.ceil(self.count / self.per_page)) if self.count else 1

    def validate_number(self, number: Any) -> int:
        if not (self.capped or self.approximate):
            return int(super().validate_number(number))
        # Past the last page counted, pages exist that the count does not know of.
        try:
            page_number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if page_number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return page_number

    def page(self, number: Any) -> Page[IdempotencyRecord]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        ids = self._leading_ids
        queryset = self.object_list
        rows: Any
        if isinstance(queryset, QuerySet) and ids is not None and top <= len(ids):
            # The ids were read in list order; the ordering is kept for the rows.
            rows = queryset.filter(pk__in=ids[bottom:top])
        elif isinstance(queryset, QuerySet) and ids is not None and not self.capped:
            rows = queryset.filter(pk__in=ids[bottom:])  # the last page of an exact count
        else:
            rows = queryset[bottom:top]
        page: Page[IdempotencyRecord] = self._get_page(rows, number, self)  # type: ignore[attr-defined]
        return page

    def _estimate(self, queryset: QuerySet[Any]) -> int | None:
        connection = connections[queryset.db]
        table = queryset.model._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # reltuples is -1 before the first VACUUM or ANALYZE (PostgreSQL 14+).
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [connection.ops.quote_name(table)],
                )
            elif connection.vendor == "mysql":
                cursor.execute(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    [table],
                )
            else:
                return None
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < self.estimate_above:
            return None
        return int(row[0])
