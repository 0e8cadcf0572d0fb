"""The ASGI application of the test project, for the uvicorn server that
tests/uvicorn starts.

Django logs a view's traceback (``django.request``) only to the console
handler that DEBUG turns on; here it goes to stderr, so the server log shows
every exception a view raised, a ``SynchronousOnlyOperation`` included.
"""

from __future__ import annotations

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

application = get_asgi_application()

_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
for _name in ("django.request", "django.server", "idempotency"):
    logging.getLogger(_name).addHandler(_handler)
logging.getLogger("django.request").setLevel(logging.ERROR)
