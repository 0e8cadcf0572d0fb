"""Settings of the benchmark project; ``benchmarks.__main__`` fills the environment.

BENCH_DATABASE=postgresql | mariadb | sqlite, BENCH_DB_NAME (a scratch database the run
creates and drops), BENCH_PG_HOST / BENCH_PG_PORT / BENCH_PG_USER, PGPASSWORD.
Two aliases: ``default`` (the endpoints and an empty record table) and
``full`` (the same schema, for a table holding a million records).
"""

from __future__ import annotations

import os

SECRET_KEY = "benchmarks-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "benchmarks.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework.authtoken",
    "idempotency",
    "benchmarks",
]
# A light stack, so that the package's share of a request is not hidden
# behind middleware that every request pays for.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ENGINE = os.environ.get("BENCH_DATABASE", "postgresql")
NAME = os.environ.get("BENCH_DB_NAME", "idempotency_bench")


def _database(name: str) -> dict[str, object]:
    if ENGINE == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(os.environ.get("BENCH_SQLITE_DIR", "."), f"{name}.sqlite3"),
            "OPTIONS": {"timeout": 20},
        }
    if ENGINE == "mariadb":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "HOST": os.environ.get("BENCH_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_MARIADB_PORT", "3306"),
            "USER": os.environ.get("BENCH_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("BENCH_MARIADB_PASSWORD", ""),
            "CONN_MAX_AGE": None,
            "OPTIONS": {"charset": "utf8mb4"},
        }
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        # Persistent connections, as in production: a connection per request
        # would cost more than everything measured here.
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "application_name": os.environ.get("BENCH_APPLICATION_NAME", "bench"),
            # --pg-options, e.g. "-c synchronous_commit=off" to see what the
            # WAL flush of each commit costs (a diagnostic, not a deployment).
            "options": os.environ.get("BENCH_PG_OPTIONS", ""),
        },
    }


DATABASES = {"default": _database(NAME), "full": _database(f"{NAME}_full")}

IDEMPOTENCY: dict[str, object] = {
    "DATABASE": os.environ.get("BENCH_IDEMPOTENCY_DATABASE", "default")
}
# --store redis: the same scenarios with the records in Redis.
if os.environ.get("BENCH_STORE") == "redis":
    IDEMPOTENCY.update({
        "STORE": "redis",
        "REDIS_URL": os.environ["BENCH_REDIS_URL"],
        "REDIS_PREFIX": os.environ["BENCH_REDIS_PREFIX"],
    })  # fmt: skip

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"idempotency": {"level": "WARNING"}},
}
