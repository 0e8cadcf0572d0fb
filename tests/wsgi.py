"""The WSGI application of the test project, for the gunicorn server that
tests/concurrency/test_processes.py starts."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

application = get_wsgi_application()
