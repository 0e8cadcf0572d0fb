"""Settings for the example payments API. Not for production.

The database is an SQLite file, db.sqlite3 at the repository root, unless the
``DATABASE_URL`` environment variable names another one:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/payments
    DATABASE_URL=mysql://root@127.0.0.1:3306/payments   (MariaDB or MySQL)
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# A fixed key and DEBUG on: this project runs on a laptop, never on a server.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-only-never-deploy-this-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "idempotency",
    "example_project.payments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

REST_FRAMEWORK = {
    # Token for curl and scripts, session for the browsable API and the admin.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema at /api/schema/, Swagger UI at /api/docs/. The last hook
# documents the Idempotency-Key header, Idempotent-Replayed and the package's
# 400/409/422/503 answers on every idempotent operation (docs/openapi.md).
SPECTACULAR_SETTINGS = {
    "TITLE": "Example payments API",
    "DESCRIPTION": "The django-idempotency example project. Not for production.",
    "VERSION": "1.0.0",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "idempotency.openapi.postprocess_schema",
    ],
}

# Every setting of django-idempotency, at its default. Uncomment to change one;
# docs/settings.md explains each.
IDEMPOTENCY: dict[str, object] = {
    # "HEADER": "Idempotency-Key",
    # "REQUIRED": False,
    # "TTL": 24 * 60 * 60,  # seconds, or a datetime.timedelta
    # "LOCK_TIMEOUT": 60,  # seconds, or a datetime.timedelta
    # "KEY_MAX_LENGTH": 255,
    # "SCOPE": "idempotency.scope.default_scope",  # dotted path or callable (request) -> str
    # "REPLAY_HEADERS": (),
    # "RELEASE_STATUSES": (401, 403, 408, 409, 425, 429),
    # "FINGERPRINT": "idempotency.fingerprint.request_fingerprint",  # or a callable
    # "MAX_STORED_RESPONSE_BYTES": 1024 * 1024,
    # "DATABASE": "default",
    # "ANONYMOUS": "share",  # or "session", or "refuse"
    # "IN_PROGRESS_WAIT": 0,  # seconds a duplicate waits for the first request; 0: 409 at once
    # "STORE": "database",  # or "redis", with REDIS_URL
    # "REDIS_URL": None,  # such as os.environ["REDIS_URL"]
    # "REDIS_CLUSTER": False,
    # "REDIS_PREFIX": "idempotency:",
}

# Celery (example_project/celery.py, payments/tasks.py). acks_late: a message is
# acknowledged after the task, so a worker that dies mid-task has it redelivered,
# and the receipt task's @idempotent_function makes that safe.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "rpc://")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The receipt emails are printed on the console.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# Seconds the simulated card processor takes per charge or refund (see
# payments/processor.py): long enough for two requests sent together to overlap.
PAYMENTS_PROCESSOR_DELAY = float(os.environ.get("PAYMENTS_PROCESSOR_DELAY", "2"))

# The runserver console shows what the package decides: replays, reused keys,
# requests in progress.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"idempotency": {"handlers": ["console"], "level": "INFO"}},
}
