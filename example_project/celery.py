"""The example's Celery app: ``celery -A example_project worker -l INFO``.

Settings come from ``CELERY_*`` names in settings.py; tasks from each app's
``tasks.py`` (payments/tasks.py: a receipt that is safe to deliver twice).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
