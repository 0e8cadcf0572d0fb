"""An index that serves a prefix search on a text column, on every supported database."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.ddl_references import Statement


class PrefixSearchIndex(models.Index):
    """A one-column index that ``column LIKE 'prefix%'`` (or a range) can use.

    - PostgreSQL: ``text_pattern_ops``, since a plain B-tree serves LIKE only
      under the C collation.
    - MariaDB/MySQL: the first ``PREFIX_LENGTH`` characters, since a TEXT
      column can only be indexed by a prefix.
    - SQLite: a plain index; its LIKE ignores case and cannot use one, so the
      query is a range (``idempotency.admin.search``).
    """

    PREFIX_LENGTH = 255

    def __init__(self, *, fields: list[str], name: str, **kwargs: Any) -> None:
        if len(fields) != 1 or kwargs:
            raise TypeError(
                "PrefixSearchIndex takes one field and a name: fields=['path'], name=..."
            )
        super().__init__(fields=fields, name=name)

    def create_sql(
        self,
        model: type[models.Model],
        schema_editor: BaseDatabaseSchemaEditor,
        using: str = "",
        **kwargs: Any,
    ) -> Statement:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            pattern = models.Index(
                fields=self.fields, name=self.name, opclasses=["text_pattern_ops"]
            )
            return pattern.create_sql(model, schema_editor, using, **kwargs)
        if vendor == "mysql":
            quote = schema_editor.quote_name
            return Statement(
                "CREATE INDEX %(name)s ON %(table)s (%(column)s(%(length)s))",
                name=quote(str(self.name)),
                table=quote(model._meta.db_table),
                column=quote(str(getattr(model._meta.get_field(self.fields[0]), "column", ""))),
                length=self.PREFIX_LENGTH,
            )
        return super().create_sql(model, schema_editor, using, **kwargs)
