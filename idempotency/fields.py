"""Model fields that keep keys and scopes exact on every database."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

# Column lengths, here rather than in models.py so that the engine can use them
# without importing models (idempotency.idempotent loads before the app registry).
KEY_LENGTH = 255
SCOPE_LENGTH = 255


class ExactCharField(models.CharField):  # type: ignore[type-arg]
    """A ``CharField`` compared byte for byte on every backend.

    MariaDB's default collations ignore case and trailing spaces, so ``abc``,
    ``ABC`` and ``abc `` would be one key and, for scopes, one caller: a
    cross-scope leak. PostgreSQL and SQLite compare exactly already.
    """

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        parameters = super().db_parameters(connection)
        if connection.vendor == "mysql":
            is_mariadb = getattr(connection, "mysql_is_mariadb", False)
            parameters["collation"] = "utf8mb4_nopad_bin" if is_mariadb else "utf8mb4_0900_bin"
        return parameters
