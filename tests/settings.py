"""Settings for the test suite; IDEMPOTENCY_TEST_DB picks the database.

IDEMPOTENCY_TEST_DB=sqlite (default) | postgresql | mariadb
"""

from __future__ import annotations

import importlib.util
import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The live server's static handler (browser and client tests) needs one.
STATIC_URL = "/static/"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "rest_framework",
    "rest_framework.authtoken",
    "idempotency",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    # tests/test_openapi.py. Set here, not overridden there: @api_view reads it
    # when the test app's views are decorated.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# Django tasks (tests/tasks/test_django_tasks.py): the immediate backend, and
# the database backend of django-tasks-db, whose db_worker the tests start,
# when that package is installed.
if importlib.util.find_spec("django_tasks_db") is not None:
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {
        "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"
                    if importlib.util.find_spec("django.tasks") is not None
                    else "django_tasks.backends.immediate.ImmediateBackend"},
        "database": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    }  # fmt: skip

TEST_DB = os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite")
# The gunicorn processes of the concurrency tests are pointed at the test
# database that pytest-django created (test_idempotency) through this.
DB_NAME = os.environ.get("IDEMPOTENCY_TEST_DB_NAME")
# Lets several runs share one server without dropping each other's database.
TEST_DB_NAME = "test_idempotency" + os.environ.get("IDEMPOTENCY_TEST_DB_SUFFIX", "")

if TEST_DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DB_NAME or "idempotency_tests.sqlite3",
        }
    }
elif TEST_DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": DB_NAME or "test",
            "TEST": {"NAME": TEST_DB_NAME},
        }
    }
elif TEST_DB == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "NAME": DB_NAME or "test",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {
                "NAME": TEST_DB_NAME,
                "CHARSET": "utf8mb4",
                "COLLATION": "utf8mb4_unicode_ci",
            },
        }
    }
else:
    raise RuntimeError(f"IDEMPOTENCY_TEST_DB={TEST_DB!r}: use sqlite, postgresql or mariadb.")

# A second database of the same kind (tests/test_databases.py): records kept
# apart from the views' writes, and a replica behind a router.
DATABASES["other"] = {
    **DATABASES["default"],
    "NAME": DATABASES["default"]["NAME"] + ("_other.sqlite3" if TEST_DB == "sqlite" else ""),
    "TEST": {**DATABASES["default"].get("TEST", {}), "NAME": TEST_DB_NAME + "_other"}
    if TEST_DB != "sqlite"
    else {},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"idempotency": {"handlers": ["null"], "propagate": True}},
}

# The gunicorn server of tests/concurrency/test_processes.py takes over a
# killed worker's lock after this many seconds instead of the default 60.
if os.environ.get("IDEMPOTENCY_TEST_LOCK_TIMEOUT"):
    IDEMPOTENCY: dict[str, object] = {
        "LOCK_TIMEOUT": float(os.environ["IDEMPOTENCY_TEST_LOCK_TIMEOUT"])
    }

# The gunicorn servers of tests/stores keep their records in the Redis (and
# under the prefix) the test chose.
if os.environ.get("IDEMPOTENCY_TEST_SERVER_REDIS_URL"):
    IDEMPOTENCY = {  # noqa: F811 - adds to the LOCK_TIMEOUT above
        **globals().get("IDEMPOTENCY", {}),
        "STORE": "redis",
        "REDIS_URL": os.environ["IDEMPOTENCY_TEST_SERVER_REDIS_URL"],
        "REDIS_PREFIX": os.environ["IDEMPOTENCY_TEST_SERVER_REDIS_PREFIX"],
        "REDIS_CLUSTER": os.environ.get("IDEMPOTENCY_TEST_SERVER_REDIS_CLUSTER") == "1",
    }
