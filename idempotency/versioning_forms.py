"""Model forms of a ``VersionedModel``: a submission from an older version is a form error.

``VersionedModelForm`` carries the version the form was rendered with in a
hidden field and refuses, as a non-field error of code ``"stale"``, a
submission made from an older version. ``VersionedInlineFormSet`` also refuses
deleting a row that changed. The admin (idempotency/versioning_admin.py, which
exports both) uses them; docs/versioning.md ("The admin and model forms") has
the rules.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.formsets import DELETION_FIELD_NAME
from django.forms.models import BaseInlineFormSet
from django.utils.translation import gettext_lazy as _

from idempotency.versioning import VERSION, VersionedModel

__all__ = ["VersionedInlineFormSet", "VersionedModelForm"]

STALE_MESSAGE = _(
    "Someone else changed this object after you opened it, so your changes were not "
    "saved. Reload the page to see their version, then make your changes again."
)


STALE_INLINE_DELETE_MESSAGE = _(
    "Someone else changed a row you marked for deletion after you opened this page, "
    "so nothing was saved. Reload the page to see their version, then make your "
    "changes again."
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
            # A new object starts at version 1: the field stays (blank and
            # ignored) so that every row of a formset has the same fields.
            self.fields[VERSION].required = False
        else:
            # Not editable, so model_to_dict leaves it out of the initial data.
            self.initial.setdefault(VERSION, self.instance.version)

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        version = (cleaned or {}).get(VERSION)
        if VERSION in self.fields and version is not None and not self.instance._state.adding:
            instance = cast(VersionedModel, self.instance)  # checked in __init__
            if version != instance.version:
                raise ValidationError(STALE_MESSAGE, code="stale")
            # The instance was read when the form was submitted; its save
            # must still find the row at the version the form was rendered with.
            instance.version = version
        return cleaned


class VersionedInlineFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """An inline formset that also refuses deleting a row that changed since the page was shown.

    A formset does not validate the forms marked for deletion, so their stale
    error alone would not stop the delete.
    """

    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            deleting_it = self.can_delete and form.cleaned_data.get(DELETION_FIELD_NAME, False)
            if deleting_it and form.has_error(NON_FIELD_ERRORS, code="stale"):
                raise ValidationError(STALE_INLINE_DELETE_MESSAGE, code="stale")
