"""PostgreSQL only: the claim and the completion as two PL/pgSQL functions.

A function's statements are planned once per connection and cached by
PL/pgSQL, which needs no session state from a connection pooler (unlike
prepared statements), and a function call can share one message with the
COMMIT and BEGIN around it: a new key costs two round trips of its own
(idempotency/stores/postgresql.py). Other databases: nothing to do.
"""

from typing import Any

from django.db import migrations

TABLE = "idempotency_idempotencyrecord"

CLAIM = f"""
CREATE OR REPLACE FUNCTION idempotency_claim_v1(
    p_scope varchar, p_key varchar, p_fingerprint varchar, p_method varchar, p_path text,
    p_lock_us bigint, p_ttl_us bigint, p_async boolean)
RETURNS TABLE (
    o_acquired boolean, o_id bigint, o_version integer, o_fingerprint varchar,
    o_status varchar, o_response_status smallint, o_response_headers jsonb,
    o_response_body bytea, o_sensitive boolean, o_expired integer, o_lock_left double precision)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_async THEN
        -- The claim's own transaction only: see stores/postgresql.py.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN QUERY
        INSERT INTO {TABLE} AS r (scope, key, version, fingerprint, status, method, path,
            response_status, response_headers, response_body, sensitive, locked_until,
            created_at, expires_at)
        VALUES (p_scope, p_key, 1, p_fingerprint, 'in_progress', p_method, p_path,
            NULL, '{{}}', NULL, FALSE,
            statement_timestamp() + p_lock_us * interval '1 microsecond',
            statement_timestamp(),
            statement_timestamp() + p_ttl_us * interval '1 microsecond')
        ON CONFLICT DO NOTHING
        RETURNING TRUE, r.id, NULL::integer, NULL::varchar, NULL::varchar, NULL::smallint,
            NULL::jsonb, NULL::bytea, NULL::boolean, NULL::integer, NULL::double precision;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT FALSE, r.id, r.version, r.fingerprint::varchar, r.status::varchar,
                r.response_status, r.response_headers, r.response_body, r.sensitive,
                CASE WHEN r.expires_at <= statement_timestamp() THEN 1 ELSE 0 END,
                EXTRACT(EPOCH FROM (r.locked_until - statement_timestamp()))::double precision
            FROM {TABLE} AS r WHERE r.scope = p_scope AND r.key = p_key;
    END IF;
END
$$;
"""

COMPLETE = f"""
CREATE OR REPLACE FUNCTION idempotency_complete_v1(
    p_id bigint, p_version integer, p_status smallint, p_headers jsonb, p_body bytea,
    p_sensitive boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {TABLE} SET status = 'completed', response_status = p_status,
        response_headers = p_headers, response_body = p_body, sensitive = p_sensitive,
        version = version + 1, locked_until = NULL
    WHERE id = p_id AND version = p_version;
    IF NOT FOUND THEN
        -- Another request took the record over: the COMMIT sent with this
        -- call must not commit the superseded call's writes.
        RAISE EXCEPTION 'idempotency: record superseded' USING ERRCODE = 'P0001';
    END IF;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS idempotency_claim_v1(
    varchar, varchar, varchar, varchar, text, bigint, bigint, boolean);
DROP FUNCTION IF EXISTS idempotency_complete_v1(bigint, integer, smallint, jsonb, bytea, boolean);
"""


def create_functions(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CLAIM)
        schema_editor.execute(COMPLETE)


def drop_functions(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0003_admin_search_indexes_body_permission"),
    ]

    operations = [
        migrations.RunPython(create_functions, drop_functions, elidable=False),
    ]
