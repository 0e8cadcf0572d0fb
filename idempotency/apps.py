from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import register


class IdempotencyConfig(AppConfig):
    name = "idempotency"
    label = "idempotency"
    verbose_name = "Idempotency"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the models are loaded: the checks import the
        # store's dialects and the response rules.
        from idempotency.checks import CHECKS

        for check in CHECKS:
            register(check, "idempotency")
