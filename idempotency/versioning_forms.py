"""Model forms of a ``VersionedModel``: a submission from an older version is a form error.

``VersionedModelForm`` carries the version the form was rendered with in a
hidden field and refuses, as a non-field error of code ``"stale"``, a
submission made from an older version; in a formset it also keeps a row
marked for deletion that changed, or was posted without its version.
``VersionedInlineFormSet`` adds the inline's own error for a stale deletion.
The admin (idempotency/versioning_admin.py, which exports both) uses them;
docs/versioning.md ("The admin and model forms") has the rules.
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


UNVERSIONED_DELETE_MESSAGE = _(
    "This row was marked for deletion on a page that did not carry its version, so it "
    "was not deleted. Reload the page, then delete it again if you still want to."
)

STALE_INLINE_DELETE_MESSAGE = _(
    "Someone else changed a row you marked for deletion after you opened this page, "
    "so nothing was saved. Reload the page to see their version, then make your "
    "changes again."
)


class VersionedModelForm(forms.ModelForm):  # type: ignore[type-arg]
    """A ModelForm that refuses a submission made from an older version of the object.

    In a formset (a model formset, an inline formset, the admin's inlines) a
    row marked for deletion is deleted only at the version the page showed:
    a stale row, or one posted without a valid version, is a form error that
    keeps the row (and makes the formset invalid), where Django's formsets
    would ignore a deleted form's errors and delete it.
    """

    # 0 is a valid stored version (a PositiveIntegerField): rows created at 0,
    # or migrated from a package whose versions start there.
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

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
        if VERSION not in self.fields or self.instance._state.adding:
            return cleaned
        instance = cast(VersionedModel, self.instance)  # checked in __init__
        version = (cleaned or {}).get(VERSION)
        if version is None:  # missing or invalid: the field has its error
            if self._keep_if_marked_for_deletion():
                raise ValidationError(UNVERSIONED_DELETE_MESSAGE, code="unversioned")
            return cleaned
        if version != instance.version:
            self._keep_if_marked_for_deletion()
            raise ValidationError(STALE_MESSAGE, code="stale")
        # The instance was read when the form was submitted; its save (or
        # its delete, for a row marked for deletion) must still find the row
        # at the version the form was rendered with.
        instance.version = version
        return cleaned

    def _keep_if_marked_for_deletion(self) -> bool:
        """Unmark a row marked for deletion, so that its formset counts its error.

        A formset validates the forms marked for deletion but ignores their
        errors and deletes their instances (``_should_delete_form`` reads the
        cleaned ``DELETE``): unmarked, the row stays, and the formset is
        invalid. The checkbox is rendered from the posted data, still checked.
        """
        if DELETION_FIELD_NAME not in self.fields or not self.cleaned_data.get(DELETION_FIELD_NAME):
            return False
        self.cleaned_data[DELETION_FIELD_NAME] = False
        self.deletion_refused = True
        return True

    deletion_refused = False


class VersionedInlineFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """An inline formset that also says, for the whole inline, that a row marked
    for deletion changed since the page was shown.

    ``VersionedModelForm`` itself keeps such a row (a form error on the row);
    this adds the inline's error, as the admin shows it above the rows.
    """

    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            refused = getattr(form, "deletion_refused", False)
            if refused and form.has_error(NON_FIELD_ERRORS, code="stale"):
                raise ValidationError(STALE_INLINE_DELETE_MESSAGE, code="stale")
