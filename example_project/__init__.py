"""A small payments API that shows django-idempotency at work (see README.md)."""

from __future__ import annotations

try:  # the Celery app, when the "celery" extra is installed (payments/tasks.py)
    from example_project.celery import app as celery_app
except ImportError:  # pragma: no cover - the example runs without Celery too
    celery_app = None

__all__ = ["celery_app"]
