"""The record's schema, as the migrations leave it in each database."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from idempotency.models import IdempotencyRecord, Status

pytestmark = pytest.mark.django_db

TABLE = IdempotencyRecord._meta.db_table


def constraints():
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, TABLE)


def columns():
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, TABLE)
    return {column.name: column for column in description}


def test_migrations_match_the_model():
    out = StringIO()

    call_command("makemigrations", "idempotency", check=True, dry_run=True, stdout=out)

    assert "No changes detected" in out.getvalue()


def test_table_has_every_field_the_contract_names():
    assert set(columns()) >= {
        "id",
        "scope",
        "key",
        "fingerprint",
        "status",
        "method",
        "path",
        "response_status",
        "response_headers",
        "response_body",
        "version",
        "locked_until",
        "created_at",
        "expires_at",
    }


def test_status_has_the_two_contract_values():
    assert {choice.value for choice in Status} == {"in_progress", "completed"}


def test_new_record_starts_at_version_1_in_progress():
    field = IdempotencyRecord._meta.get_field
    assert field("version").default == 1
    assert field("status").default == Status.IN_PROGRESS


def test_scope_and_key_are_unique_together_in_the_database():
    found = constraints()["idempotency_scope_key_uniq"]

    assert found["unique"] is True
    assert found["columns"] == ["scope", "key"]


def test_expires_at_has_an_index_for_purging():
    found = constraints()["idempotency_expires_at_idx"]

    assert found["index"] is True
    assert found["columns"] == ["expires_at"]


def test_scope_and_key_columns_compare_exactly():
    # MariaDB's default collations ignore case and trailing spaces: the columns
    # must carry a binary NO PAD collation there. PostgreSQL and SQLite keep
    # their exact default (introspection reports None for the default).
    found = columns()
    exact = {"utf8mb4_nopad_bin", "utf8mb4_0900_bin"} if connection.vendor == "mysql" else {None}

    assert found["scope"].collation in exact
    assert found["key"].collation in exact
