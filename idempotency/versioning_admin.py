"""The admin of a ``VersionedModel``: a stale edit or delete shows an error, not an overwrite.

``VersionedModelAdmin`` uses ``VersionedModelForm`` (idempotency/versioning_forms.py,
exported here) on the change form, and turns the rare ``StaleObjectError`` of
a change saved between the admin's read and its write into an error message.
Its delete confirmation and ``delete_selected`` action delete only at the
versions shown (idempotency/versioning_admin_delete.py).
``VersionedTabularInline`` / ``VersionedStackedInline`` give inline rows their
version. docs/versioning.md ("The admin and model forms") has the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import flatten_fieldsets
from django.db import router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from idempotency import versioning_admin_delete as deleting
from idempotency.versioning import VERSION, StaleObjectError, VersionedModel
from idempotency.versioning_forms import STALE_MESSAGE, VersionedInlineFormSet, VersionedModelForm

__all__ = [
    "VersionedInlineFormSet",
    "VersionedInlineMixin",
    "VersionedModelAdmin",
    "VersionedModelForm",
    "VersionedStackedInline",
    "VersionedTabularInline",
]


def _without_version(fields: Sequence[Any]) -> list[Any]:
    kept: list[Any] = []
    for field in fields:
        if isinstance(field, (list, tuple)):  # fields shown on one line
            field = [name for name in field if name != VERSION]
            if field:
                kept.append(tuple(field))
        elif field != VERSION:
            kept.append(field)
    return kept


def _version_last(fieldsets: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The fieldsets without ``version``, and with it at the end of the last one."""
    kept: list[tuple[Any, dict[str, Any]]] = [
        (name, {**options, "fields": _without_version(options["fields"])})
        for name, options in fieldsets
    ]
    if kept:
        name, options = kept[-1]
        kept[-1] = (name, {**options, "fields": [*options["fields"], VERSION]})
    return kept


def _form_fields(fields: Sequence[Any] | None) -> list[Any] | None:
    # The version is a declared form field, always in the form; named in the
    # model form's fields it would be refused as not editable.
    return None if fields is None else [name for name in fields if name != VERSION]


class VersionedInlineMixin(admin.options.InlineModelAdmin):  # type: ignore[type-arg]
    """An inline whose rows carry their version: a stale row is a form error, not an overwrite.

    Its ``form`` must be a ``VersionedModelForm`` and its ``formset`` a
    ``VersionedInlineFormSet`` (the defaults). Use ``VersionedTabularInline``
    or ``VersionedStackedInline``.
    """

    form = VersionedModelForm
    formset = VersionedInlineFormSet

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls.form, VersionedModelForm):
            raise TypeError(
                f"{cls.__name__}.form must subclass "
                "idempotency.versioning_admin.VersionedModelForm, which carries the "
                f"version: class {cls.form.__name__}(VersionedModelForm): ..."
            )
        if not issubclass(cls.formset, VersionedInlineFormSet):
            raise TypeError(
                f"{cls.__name__}.formset must subclass "
                "idempotency.versioning_admin.VersionedInlineFormSet, which refuses "
                f"deleting stale rows: class {cls.formset.__name__}(VersionedInlineFormSet): ..."
            )

    def __init__(self, parent_model: type[Any], admin_site: Any) -> None:
        if not (isinstance(self.model, type) and issubclass(self.model, VersionedModel)):
            raise TypeError(
                f"{type(self).__name__} is a versioned inline, but {self.model!r} is not "
                "a VersionedModel; use admin.TabularInline or admin.StackedInline instead."
            )
        super().__init__(parent_model, admin_site)

    def get_fieldsets(self, request: HttpRequest, obj: Any | None = None) -> Any:
        # Every row has the field (VersionedModelForm keeps it, blank, on new rows).
        return _version_last(super().get_fieldsets(request, obj))

    def get_formset(self, request: HttpRequest, obj: Any | None = None, **kwargs: Any) -> Any:
        if "fields" in kwargs:
            fields = kwargs.pop("fields")
        else:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        return super().get_formset(request, obj, fields=_form_fields(fields), **kwargs)


class VersionedTabularInline(VersionedInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    """A ``TabularInline`` of a ``VersionedModel``."""


class VersionedStackedInline(VersionedInlineMixin, admin.StackedInline):  # type: ignore[type-arg]
    """A ``StackedInline`` of a ``VersionedModel``."""


def _refuse_unversioned_inlines(admin_name: str, inlines: Any) -> None:
    for inline in inlines:
        model = getattr(inline, "model", None)
        if not (isinstance(model, type) and issubclass(model, VersionedModel)):
            continue
        if not issubclass(inline, VersionedInlineMixin):
            kind = "Stacked" if issubclass(inline, admin.StackedInline) else "Tabular"
            raise TypeError(
                f"{admin_name}: the inline {inline.__name__} edits {model.__name__}, a "
                "VersionedModel, without its version, so it would overwrite changes made "
                f"after the page was shown: subclass "
                f"idempotency.versioning_admin.Versioned{kind}Inline instead."
            )


class VersionedModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A ModelAdmin whose change form never overwrites a change it did not show.

    Its ``form`` must be a ``VersionedModelForm`` (the default). The hidden
    version goes into the last fieldset of the change form, whatever
    ``fields`` or ``fieldsets`` say. The delete confirmation and the
    ``delete_selected`` action delete only objects still at the version their
    confirmation page showed; inlines of versioned models must be versioned
    inlines.
    """

    form = VersionedModelForm
    stale_message = STALE_MESSAGE
    stale_delete_message = deleting.STALE_DELETE_MESSAGE
    stale_selection_message = deleting.STALE_SELECTION_MESSAGE
    # Django's pages, with the versions in their forms. A template of your
    # own for these pages extends them.
    delete_confirmation_template = "admin/idempotency/versioning/delete_confirmation.html"
    delete_selected_confirmation_template = (
        "admin/idempotency/versioning/delete_selected_confirmation.html"
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls.form, VersionedModelForm):
            raise TypeError(
                f"{cls.__name__}.form must subclass "
                "idempotency.versioning_admin.VersionedModelForm, which carries the "
                f"version: class {cls.form.__name__}(VersionedModelForm): ..."
            )
        if cls.list_editable:
            # Django builds the changelist's forms from the model, not from
            # ``form``: they carry no version and would overwrite changes
            # made after the list was shown.
            raise TypeError(
                f"{cls.__name__}.list_editable would save rows without their version, "
                "overwriting changes made after the list was shown: remove list_editable "
                "and edit versioned objects in their change form."
            )
        _refuse_unversioned_inlines(cls.__name__, cls.inlines)

    def __init__(self, model: type[Any], admin_site: Any) -> None:
        if not issubclass(model, VersionedModel):
            raise TypeError(
                f"{type(self).__name__} is a VersionedModelAdmin, but {model.__name__} "
                "is not a VersionedModel; register it with admin.ModelAdmin instead."
            )
        super().__init__(model, admin_site)

    def get_fieldsets(self, request: HttpRequest, obj: Any | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # the add form: a new object starts at version 1
            return [
                (name, {**options, "fields": _without_version(options["fields"])})
                for name, options in fieldsets
            ]
        return _version_last(fieldsets)

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if "fields" in kwargs:
            fields = kwargs.pop("fields")
        else:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        return super().get_form(request, obj, change, fields=_form_fields(fields), **kwargs)

    def get_inline_instances(self, request: HttpRequest, obj: Any | None = None) -> Any:
        # get_inlines() may choose the inlines per request.
        _refuse_unversioned_inlines(type(self).__name__, self.get_inlines(request, obj))
        return super().get_inline_instances(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        djangos = actions.get("delete_selected")
        if djangos is not None and djangos[0] is django_delete_selected:
            _, name, description = djangos
            actions["delete_selected"] = (deleting.delete_selected, name, description)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and deleting.posted_version(request) is None:
            # Confirmed on a page that did not show the version: never
            # delete blindly, show the confirmation page again.
            self.message_user(request, deleting.UNCONFIRMED_MESSAGE, messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        # The confirmation template repeats Django's text, quoted as in this Django.
        context = {"curly_quotes": django.VERSION >= (6, 0), **(extra_context or {})}
        try:
            return super().delete_view(request, object_id, context)
        except StaleObjectError:
            # Django's transaction, with its LogEntry, was rolled back.
            self.message_user(request, self.stale_delete_message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete ``obj`` only at the version its confirmation page showed."""
        version = deleting.posted_version(request)
        if version is None:
            raise ValueError(
                "VersionedModelAdmin.delete_model() deletes at the version its "
                "confirmation page posted ('version'), and this request has none."
            )
        obj.version = version
        obj.delete()  # one conditional UPDATE that checks and locks, then Django's delete

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """Delete the selected rows only if all are at the versions their confirmation page showed."""
        shown = deleting.posted_versions(request)
        if shown is None:
            raise ValueError(
                "VersionedModelAdmin.delete_queryset() deletes at the versions its "
                "confirmation page posted ('version-<pk>'), and this request has none."
            )
        using = router.db_for_write(self.model)
        with transaction.atomic(using=using):
            deleting.lock_versions(queryset, shown, using)
            super().delete_queryset(request, queryset)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except StaleObjectError:
            # Another change landed between this request's read and its save;
            # the admin's transaction was rolled back, so nothing was written.
            self.message_user(request, self.stale_message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
