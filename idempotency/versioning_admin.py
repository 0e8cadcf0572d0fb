"""Forms and the admin: editing a stale ``VersionedModel`` shows an error, not an overwrite.

``VersionedModelForm`` carries the version the form was rendered with in a
hidden field and refuses, as a form error, a submission made from an older
version. ``VersionedModelAdmin`` uses it on the change form, and turns the
rare ``StaleObjectError`` of a change saved between the admin's read and its
write into an error message. docs/versioning.md ("The admin") has the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from idempotency.versioning import VERSION, StaleObjectError, VersionedModel

__all__ = ["VersionedModelAdmin", "VersionedModelForm"]

STALE_MESSAGE = _(
    "Someone else changed this object after you opened it, so your changes were not "
    "saved. Reload the page to see their version, then make your changes again."
)


class VersionedModelForm(forms.ModelForm):  # type: ignore[type-arg]
    """A ModelForm that refuses a submission made from an older version of the object."""

    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.instance, VersionedModel):
            raise TypeError(
                f"{type(self).__name__} is a VersionedModelForm, but "
                f"{type(self.instance).__name__} is not a VersionedModel."
            )
        if self.instance._state.adding:
            self.fields.pop(VERSION, None)  # a new object starts at version 1
        else:
            # Not editable, so model_to_dict leaves it out of the initial data.
            self.initial.setdefault(VERSION, self.instance.version)

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        version = (cleaned or {}).get(VERSION)
        if VERSION in self.fields and version is not None:
            instance = cast(VersionedModel, self.instance)  # checked in __init__
            if version != instance.version:
                raise ValidationError(STALE_MESSAGE, code="stale")
            # The instance was read when the form was submitted; its save
            # must still find the row at the version the form was rendered with.
            instance.version = version
        return cleaned


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


class VersionedModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A ModelAdmin whose change form never overwrites a change it did not show.

    Its ``form`` must be a ``VersionedModelForm`` (the default). The hidden
    version goes into the last fieldset of the change form, whatever
    ``fields`` or ``fieldsets`` say.
    """

    form = VersionedModelForm
    stale_message = STALE_MESSAGE

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

    def __init__(self, model: type[Any], admin_site: Any) -> None:
        if not issubclass(model, VersionedModel):
            raise TypeError(
                f"{type(self).__name__} is a VersionedModelAdmin, but {model.__name__} "
                "is not a VersionedModel; register it with admin.ModelAdmin instead."
            )
        super().__init__(model, admin_site)

    def get_fieldsets(self, request: HttpRequest, obj: Any | None = None) -> Any:
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            (name, {**options, "fields": _without_version(options["fields"])})
            for name, options in super().get_fieldsets(request, obj)
        ]
        if obj is not None and fieldsets:
            name, options = fieldsets[-1]
            fieldsets[-1] = (name, {**options, "fields": [*options["fields"], VERSION]})
        return fieldsets

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # The version is a declared form field, always in the form; named in
        # the model form's fields it would be refused as not editable.
        if "fields" in kwargs:
            fields = kwargs.pop("fields")
        else:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        if fields is not None:
            fields = [name for name in fields if name != VERSION]
        return super().get_form(request, obj, change, fields=fields, **kwargs)

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
