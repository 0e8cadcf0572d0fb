"""Django REST framework: carry the version a client read, so a stale update fails.

``VersionField`` goes on a ``ModelSerializer`` of a ``VersionedModel``. It
shows the version on reads; on updates (PUT and PATCH alike) the client must
send back the version it read, and ``ModelSerializer.update`` sets it on the
instance, so ``serializer.save()`` raises ``StaleObjectError`` when the row
has moved on. docs/versioning.md shows the serializer and the answers.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from idempotency.versioning import VersionedModel

__all__ = ["VersionField"]


class VersionField(serializers.IntegerField):
    """The ``version`` of a ``VersionedModel``: shown on reads, required on updates.

    On create it is ignored (a new object starts at version 1). On update it
    is required even in a partial update: an update without the version its
    client read would overwrite changes that client never saw.
    """

    default_error_messages = {
        "required": (
            "Send the version you read with this update, so that a change made since "
            "then is not overwritten."
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        # 0 is a valid stored version (a PositiveIntegerField).
        kwargs.setdefault("min_value", 0)
        # Not required on create; validate_empty_values requires it on updates.
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "The version this representation is at; send it back unchanged with an update.",
        )
        super().__init__(**kwargs)

    def bind(self, field_name: str, parent: Any) -> None:
        super().bind(field_name, parent)
        model = getattr(getattr(parent, "Meta", None), "model", None)
        if model is not None and not issubclass(model, VersionedModel):
            raise TypeError(
                f"{type(parent).__name__}.{field_name} is a VersionField, but "
                f"{model.__name__} is not a VersionedModel; make it one "
                "(class Payment(VersionedModel): ...) or use an IntegerField."
            )

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if getattr(self.parent, "instance", None) is None:
            raise SkipField()  # creating: whatever the client sends, it starts at 1
        if data is empty:
            self.fail("required")
        return super().validate_empty_values(data)
