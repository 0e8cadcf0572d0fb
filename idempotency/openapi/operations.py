"""Which operations of a drf-spectacular schema the package protects, and with
which options.

A handler wrapped by ``@idempotent`` wins (on an ``@api_view`` function, DRF's
handler holds the decorated function in its closure), then ``@idempotent`` on
``dispatch``, then ``IdempotencyMixin``: the order the doors follow at request
time.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from rest_framework.generics import GenericAPIView

from idempotency.drf import IdempotencyMixin
from idempotency.openapi.document import Json
from idempotency.options import ViewOptions, options_of

# The action methods behind each unsafe handler of DRF's generic views, in the
# order they call each other (partial_update calls update).
GENERIC_ACTIONS = {
    "post": ("create",),
    "put": ("update",),
    "patch": ("partial_update", "update"),
    "delete": ("destroy",),
}


def idempotent_operations(
    result: Json, generator: Any, request: Any = None
) -> Iterator[tuple[Json, Any, ViewOptions]]:
    """Each idempotent operation of ``result``, with its view and options.

    The generator's endpoints are ``(path, regex, method, callback)`` before
    drf-spectacular places them; this follows
    ``drf_spectacular.generators.SchemaGenerator.parse`` to the path each
    operation was placed under: coercion of ``{pk}``, API versions, prefix.
    """
    from drf_spectacular import plumbing
    from drf_spectacular.settings import spectacular_settings as spectacular

    views_at = []
    for route, _regex, method, callback in generator.endpoints or ():
        view = generator.create_view(callback, method)
        views_at.append((generator.coerce_path(route, method, view), method, view))
    prefix = path_prefix([(route, view) for route, _, view in views_at])
    seen: set[int] = set()
    for route, method, view in views_at:
        view.request = spectacular.GET_MOCK_REQUEST(method, route, view, request)
        if view.versioning_class and plumbing.is_versioning_supported(view.versioning_class):
            version = generator.api_version or view.versioning_class.default_version
            if not version:
                continue
            patterns = generator.inspector.patterns
            route = plumbing.modify_for_versioning(  # type: ignore[no-untyped-call]
                patterns, method, route, view, version
            )
            if not plumbing.operation_matches_version(view, version):
                continue
        operation = result.get("paths", {}).get(final_path(route, prefix), {}).get(method.lower())
        if operation is None or id(operation) in seen:
            continue  # not in the schema: excluded, or not the caller's to see
        options = view_options(view, method)
        if options is not None and method in options.methods:
            seen.add(id(operation))
            yield operation, view, options


def path_prefix(views_at: list[tuple[str, Any]]) -> str:
    """The prefix ``SCHEMA_PATH_PREFIX_TRIM`` removes, found as parse finds it."""
    from drf_spectacular.settings import spectacular_settings as spectacular

    prefix: str | None = spectacular.SCHEMA_PATH_PREFIX
    if prefix is None:
        prefix = "/"
        if len({type(view) for _, view in views_at}) > 1:
            prefix = re.escape(posixpath.commonpath([route for route, _ in views_at]))
    return prefix if prefix.startswith("^") else "^" + prefix


def final_path(path: str, prefix: str) -> str:
    from drf_spectacular.settings import spectacular_settings as spectacular

    if spectacular.SCHEMA_PATH_PREFIX_TRIM:
        path = re.sub(pattern=prefix, repl="", string=path, flags=re.IGNORECASE)
    if spectacular.SCHEMA_PATH_PREFIX_INSERT:
        path = spectacular.SCHEMA_PATH_PREFIX_INSERT + path
    if not path.startswith("/"):
        path = "/" + path
    if spectacular.CAMELIZE_NAMES:
        import inflection

        path = re.sub(r"\{(\w+)\}", lambda m: f"{{{inflection.camelize(m[1], False)}}}", path)
    return path


def view_options(view: Any, method: str) -> ViewOptions | None:
    """The options the package protects ``method`` requests of ``view`` with, or ``None``."""
    action = getattr(view, "action", None) if getattr(view, "action_map", None) else None
    found = handler_options(getattr(view, action or method.lower(), None))
    if found is None and action is None and isinstance(view, GenericAPIView):
        # A generic view's post, put, patch or delete calls its create, update,
        # partial_update or destroy: @idempotent there protects the request too.
        for generic in GENERIC_ACTIONS.get(method.lower(), ()):
            found = handler_options(getattr(view, generic, None))
            if found is not None:
                break
    if found is None:  # @idempotent on dispatch (method_decorator included)
        found = options_of(getattr(view, "dispatch", None))
    if found is None and isinstance(view, IdempotencyMixin):
        found = ViewOptions(
            required=mixin_answer(view, "required"),
            token=view.idempotency_token,
            methods=mixin_answer(view, "methods"),
        )
    return found


def mixin_answer(view: IdempotencyMixin, name: str) -> Any:
    """``view.get_idempotency_<name>()`` on the schema's mock request. A hook
    that needs a real request (its user's credential, say) and raises on the
    mock one is warned about, as drf-spectacular warns about a view it cannot
    introspect, and answered by the mixin's own hook: the class attribute,
    else the settings. One such view must not fail the whole schema."""
    from drf_spectacular.drainage import warn

    hook = f"get_idempotency_{name}"
    try:
        return getattr(view, hook)()
    except Exception as error:  # noqa: BLE001 - any error of the project's hook
        warn(
            f"{type(view).__qualname__}.{hook}() raised on the schema's mock request "
            f"({type(error).__name__}: {error}); the idempotency of its operations is "
            f"documented from idempotency_{name} and the settings instead."
        )
        return getattr(IdempotencyMixin, hook)(view)


def handler_options(handler: Any) -> ViewOptions | None:
    found = options_of(handler)
    if found is None and getattr(handler, "__module__", None) == "rest_framework.decorators":
        # @api_view: its handler calls the decorated function, held in its closure.
        for cell in getattr(getattr(handler, "__func__", handler), "__closure__", None) or ():
            found = options_of(cell.cell_contents)
            if found is not None:
                break
    return found
