"""A stand-in for a card processor. Demo only.

Real processors take a moment to answer, which is when clients time out and
retry. This one sleeps ``settings.PAYMENTS_PROCESSOR_DELAY`` seconds (2 by
default, ``PAYMENTS_PROCESSOR_DELAY=0`` to turn it off) so that two requests
sent together overlap, as the README's concurrent-duplicate example needs.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings


def charge(amount: int, currency: str) -> str:
    """Charge the card; returns the processor's reference for the charge."""
    time.sleep(settings.PAYMENTS_PROCESSOR_DELAY)
    return f"ch_{uuid.uuid4().hex[:16]}"


def refund(reference: str) -> None:
    """Refund a charge in full."""
    time.sleep(settings.PAYMENTS_PROCESSOR_DELAY)
