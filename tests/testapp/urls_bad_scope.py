"""A URLconf whose one view has a scope= that does not import (check E030)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from idempotency import idempotent


@idempotent(scope="no.such.path")
def unimportable_scope_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=201)


urlpatterns = [path("unimportable-scope/", unimportable_scope_view)]
