"""``{% load idempotency %}{% idempotency_token %}``: a form's one-time key."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from idempotency.tokens import FIELD, issue_token

register = template.Library()


@register.simple_tag(takes_context=True)
def idempotency_token(context: Any) -> SafeString:
    """A hidden ``idempotency_token`` field holding a fresh token for this request's scope.

    The page then stays out of Django's caches (``tokens.mark_issued``); a
    view with no door must be ``@never_cache`` for the caches beyond Django."""
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            "{% idempotency_token %} needs the request in the template context: add "
            "'django.template.context_processors.request' to TEMPLATES' context_processors "
            "(render(request, ...) then puts it there), or pass it in the context yourself."
        )
    return format_html('<input type="hidden" name="{}" value="{}">', FIELD, issue_token(request))
