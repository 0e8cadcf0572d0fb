"""The search box: an exact key, an exact scope, or the beginning of a path.

Keys are stored as digests (``idempotency.keys``), so a key is found by its
digest under the current secret or any of ``SECRET_KEY_FALLBACKS``. Each of
the three conditions is served by an index (``key``, the unique
``(scope, key)``, the path index); there is no substring search, which would
read every row.
"""

from __future__ import annotations

import sys
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet

from idempotency.keys import digests


def matching(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    term = term.strip()
    if not term:
        return queryset
    vendor = connections[queryset.db].vendor
    return queryset.filter(
        Q(key__in=digests(term)) | Q(scope=term) | path_starts_with(term, vendor)
    )


def path_starts_with(prefix: str, vendor: str) -> Q:
    """``path`` begins with ``prefix``, in a form the path index serves.

    SQLite's LIKE ignores ASCII case and so cannot use a plain index; its
    default collation compares code points, so a prefix is the range
    ``[prefix, prefix with its last character incremented)``. PostgreSQL's
    ``text_pattern_ops`` index serves LIKE; a range would not be exact under a
    linguistic collation, which ignores punctuation at first.
    """
    if vendor != "sqlite":
        return Q(path__startswith=prefix)
    following = _following(prefix)
    if following is None:
        return Q(path__gte=prefix)
    return Q(path__gte=prefix, path__lt=following)


def _following(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters
            code = 0xE000
        if code <= sys.maxunicode:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None
