"""Django REST framework adapter: ``IdempotencyMixin``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response

from idempotency.conf import RequestFunction
from idempotency.decorators import WRAPPED_MARK, respond
from idempotency.engine import UNSAFE_METHODS, ViewOptions

if TYPE_CHECKING:
    from rest_framework.views import APIView

    _Base = APIView
else:
    _Base = object


class IdempotencyMixin(_Base):
    """Make every unsafe method of a DRF view or viewset idempotent.

    Put it before the view class in the bases. Attributes left ``None`` are read
    from ``settings.IDEMPOTENCY`` at request time; override the ``get_*``
    methods to decide per request.
    """

    idempotency_scope: str | RequestFunction | None = None
    idempotency_required: bool | None = None
    idempotency_ttl: timedelta | float | None = None
    idempotency_methods: tuple[str, ...] | None = None

    def get_idempotency_methods(self) -> frozenset[str]:
        if self.idempotency_methods is None:
            return UNSAFE_METHODS
        return frozenset(method.upper() for method in self.idempotency_methods)

    def get_idempotency_options(self) -> ViewOptions:
        return ViewOptions(
            scope=self.idempotency_scope,
            required=self.idempotency_required,
            ttl=self.idempotency_ttl,
            methods=self.get_idempotency_methods(),
        )

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # After DRF's authentication, permissions and throttling, and before
        # dispatch looks the handler up: the wrapped handler is what it finds,
        # so refused requests never reach the engine and create no record.
        super().initial(request, *args, **kwargs)
        name = (request.method or "").lower()
        handler = getattr(self, name, None)
        if (
            handler is None
            or name not in self.http_method_names
            or getattr(handler, WRAPPED_MARK, False)
        ):
            return
        options = self.get_idempotency_options()

        def idempotent_handler(request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return respond(request, lambda: handler(request, *args, **kwargs), options)

        setattr(self, name, idempotent_handler)


def finalize(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Render a DRF ``Response`` inside the view's transaction, so it can be stored.

    DRF renders after the handler returns; its view's ``finalize_response``
    chooses the renderer, and calling it twice is harmless.
    """
    if isinstance(response, Response) and not response.is_rendered:
        view = request.parser_context.get("view")  # type: ignore[attr-defined]
        if view is not None:
            view.finalize_response(request, response)  # sets the renderer in place
        response.render()
    return response
