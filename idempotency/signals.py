"""Signals a project can connect to; sent only by the engine, with ``send_robust``.

A broken receiver never turns a payment into a 500: its exception is logged on
the ``idempotency`` logger and the request goes on. Every signal is sent with
``sender=IdempotencyRecord`` and the keyword arguments ``request``, ``scope``
and ``key``; those that concern a response add ``status``.
"""

from __future__ import annotations

from django.dispatch import Signal

# A new response was stored with its record. Sent once the view's transaction
# has committed (on_commit), so receivers never see a response that rolled back.
# Extra: status, and replayable (False when the response was streamed or too
# large: the record completed without a body).
response_stored = Signal()

# A stored response was replayed to a retry; the view did not run. Extra: status.
response_replayed = Signal()

# The key was reused for a different request (another method, path or body);
# answered 422.
key_reused = Signal()

# The same request was still running elsewhere; answered 409.
request_in_progress = Signal()

# A claim was given up without storing a response (the view raised, or answered
# 5xx or a RELEASE_STATUSES status) so that a retry runs again.
record_released = Signal()

# A record whose lock had expired (its worker died or stalled) was taken over.
lock_taken_over = Signal()
