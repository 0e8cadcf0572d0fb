"""Where the project's ``VersionedModel`` s are edited without their version.

A ``VersionedModel`` checks, on save, the version the instance was read at.
An admin or a serializer that loads the object and saves it in the same
request, without carrying the version its user or client read, passes that
check every time and overwrites changes made since the page or the
representation was shown. Django's ``ModelAdmin`` and DRF's
``ModelSerializer`` do exactly that unless the package's classes are used:

- E033: a model admin the URLconf serves (every URL of a ``ModelAdmin``
  carries it as ``model_admin``) edits a versioned model with a plain
  ``ModelAdmin``, or with a plain inline;
- E034: an imported ``ModelSerializer`` of a versioned model lists
  ``version`` without ``VersionField`` (``ModelSerializer`` makes the
  non-editable field read-only, so the version a client sends is ignored).

docs/checks.md has both ids; docs/versioning.md the classes to use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeGuard

from django.apps import apps
from django.core.checks import CheckMessage
from django.urls import get_resolver

from idempotency.checks.messages import guarded, message
from idempotency.checks.views import _callbacks
from idempotency.versioning import VERSION, VersionedModel


@guarded("the admin of versioned models")
def check_versioned_admins(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed("django.contrib.admin"):
        return []
    return [
        message(
            "idempotency.E033",
            problem,
            hint="Its change form is built from the object as it is when the form is "
            "saved, so a change someone else saved after the page was shown is "
            "overwritten without a word.",
        )
        for problem in sorted(set(_unversioned_admins()))
    ]


@guarded("the serializers of versioned models")
def check_versioned_serializers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        from rest_framework import serializers
    except ImportError:
        return []
    _load_urlconf()  # the views' serializers are imported with it
    return [
        message(
            "idempotency.E034",
            problem,
            hint="ModelSerializer makes a model's non-editable version read-only, so "
            "an update saves at whatever version the row is at when it is loaded: "
            "a change made after the client read the object is overwritten.",
        )
        for problem in sorted(set(_unversioned_serializers(serializers.ModelSerializer)))
    ]


def _unversioned_admins() -> Iterator[str]:
    from django.contrib import admin

    from idempotency.versioning_admin import VersionedInlineMixin, VersionedModelAdmin

    for model_admin in _served_model_admins():
        model = model_admin.model
        site = getattr(getattr(model_admin, "admin_site", None), "name", "?")
        name = _name(type(model_admin))
        if _versioned(model) and not isinstance(model_admin, VersionedModelAdmin):
            yield (
                f"{name} edits {model._meta.label}, a VersionedModel, in the admin site "
                f"{site!r} without its version, so a stale edit overwrites another "
                "user's change: subclass idempotency.versioning_admin.VersionedModelAdmin "
                "instead of admin.ModelAdmin."
            )
        for inline in getattr(model_admin, "inlines", ()):
            inline_model = getattr(inline, "model", None)
            if _versioned(inline_model) and not issubclass(inline, VersionedInlineMixin):
                kind = "Stacked" if issubclass(inline, admin.StackedInline) else "Tabular"
                yield (
                    f"{name}'s inline {_name(inline)} edits {inline_model._meta.label}, a "
                    f"VersionedModel, in the admin site {site!r} without its version, so "
                    "a stale edit overwrites another user's change: subclass "
                    f"idempotency.versioning_admin.Versioned{kind}Inline instead."
                )


def _served_model_admins() -> list[Any]:
    """The model admins whose views the URLconf serves, in URLconf order."""
    found: dict[int, Any] = {}
    for callback in _callbacks(_load_urlconf()):
        model_admin = getattr(callback, "model_admin", None)  # set by ModelAdmin.get_urls
        if model_admin is not None:
            found.setdefault(id(model_admin), model_admin)
    return list(found.values())


def _unversioned_serializers(base: type) -> Iterator[str]:
    from idempotency.versioning_drf import VersionField

    for serializer in _subclasses(base):
        model = getattr(getattr(serializer, "Meta", None), "model", None)
        if not _versioned(model):
            continue
        if _carries_version_without_version_field(serializer, VersionField):
            yield (
                f"{_name(serializer)} serializes {model._meta.label}, a VersionedModel, "
                "with a version that is not a VersionField, so an update from a stale "
                "read overwrites another client's change: declare "
                "version = idempotency.versioning_drf.VersionField() on it."
            )


def _carries_version_without_version_field(serializer: Any, version_field: type) -> bool:
    declared = getattr(serializer, "_declared_fields", {})
    for name, field in declared.items():
        carries = (getattr(field, "source", None) or name) == VERSION
        if carries and not isinstance(field, version_field):
            return True
    if VERSION in declared:  # a VersionField, or a field of that name with another source
        return False
    meta = serializer.Meta
    fields = getattr(meta, "fields", None)
    exclude = getattr(meta, "exclude", None)
    if fields == "__all__":
        return True
    if isinstance(fields, (list, tuple)):
        return VERSION in fields
    # Meta.exclude keeps every field it does not name; neither is DRF's error.
    return fields is None and isinstance(exclude, (list, tuple)) and VERSION not in exclude


def _versioned(model: Any) -> TypeGuard[type[VersionedModel]]:
    return (
        isinstance(model, type) and issubclass(model, VersionedModel) and not model._meta.abstract
    )


def _subclasses(base: type) -> list[type]:
    seen: dict[type, None] = {}
    pending: list[type] = list(base.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls not in seen:
            seen[cls] = None
            pending.extend(cls.__subclasses__())
    return list(seen)


def _load_urlconf() -> Any:
    try:
        return get_resolver().url_patterns
    except Exception:  # a broken URLconf is Django's own check (urls.E...)
        return []


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


CHECKS = (check_versioned_admins, check_versioned_serializers)
