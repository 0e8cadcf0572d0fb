"""Optimistic locking and state transitions for the project's own models.

Contract section 9. ``VersionedModel`` makes ``save()`` and ``delete()`` of an
instance conditional on the version it was read at; ``transition()`` (defined
in idempotency/transitions.py, exported here) moves a state field with one
conditional ``UPDATE``. docs/versioning.md and docs/transitions.md give the
rules and the decisions behind them.

Django's save keeps its own flow; three of its steps are hooked: ``_save_table``
(which table holds the version; raw or not; a new instance is inserted),
``_do_update`` (adds ``AND version = %s`` to the one ``UPDATE`` Django already
sends, and writes ``version + 1`` with it) and ``save_base`` (a stale save that
wrote nothing leaves the transaction usable). Their signatures are the same in
Django 5.2 and 6.x except for ``_do_update``'s ``returning_fields`` (6.0),
which is passed through untouched.

This module must not import the engine: the engine imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from django.db import connections, models, router, transaction
from django.db.models import QuerySet
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import class_prepared

if TYPE_CHECKING:
    from idempotency.transitions import transition

__all__ = ["StaleObjectError", "VersionedModel", "transition"]

VERSION = "version"
# Set on the instance for the duration of the save of the table that holds
# the version: the version this save requires the row to be at.
_EXPECTED = "_idempotency_expected_version"
# Set on an instance loaded without its version (only(), defer()) whose
# version Django then loaded on first read: the row's version at that read,
# not the one the instance's other fields were read at.
_LOADED_LATE = "_idempotency_version_loaded_late"
# A version given as a string (a form field, a query parameter): ASCII digits
# only, and no longer than a PositiveIntegerField's largest value needs.
_MAX_DIGITS = 20


class StaleObjectError(Exception):
    """The row is no longer at the version the instance was read at; nothing was written.

    ``model`` is the instance's class, ``pk`` its primary key and
    ``expected_version`` the version the write required. Another writer
    changed or deleted the row since it was read: read it again and retry.
    """

    def __init__(self, model: type[models.Model], pk: Any, expected_version: int) -> None:
        self.model = model
        self.pk = pk
        self.expected_version = expected_version
        super().__init__(
            f"{model._meta.label} pk={pk!r} is no longer at version {expected_version}: "
            "another writer changed or deleted it since it was read, and nothing was "
            "written. Read it again and retry."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The message is derived; pickling (Celery results, multiprocessing)
        # must rebuild the exception from its three attributes.
        return (type(self), (self.model, self.pk, self.expected_version))


class VersionedModel(models.Model):
    """An abstract model whose saves and deletes never overwrite a change they did not see.

    ``version`` is the version the instance was read at. Saving a loaded
    instance sends one ``UPDATE ... WHERE pk = %s AND version = %s`` that also
    writes ``version + 1`` (and sets it on the instance); when no row matches,
    ``StaleObjectError`` is raised and nothing is written. A new instance is
    always inserted: it never overwrites an existing row. ``QuerySet.update()``
    and ``bulk_update()`` do not check or bump the version.
    """

    # Not editable: forms and serializers carry it only when asked to
    # (VersionedModelForm, VersionField), never as a number a user types.
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        abstract = True

    def save_base(
        self,
        raw: bool = False,
        force_insert: bool | tuple[models.base.ModelBase, ...] = False,
        force_update: bool = False,
        using: str | None = None,
        update_fields: Iterable[str] | None = None,
    ) -> None:
        if not (raw or force_insert) and (not self._state.adding or force_update or update_fields):
            self._read_version()  # refuse a save that cannot be checked before it starts
        try:
            super().save_base(raw, force_insert, force_update, using, update_fields)
        except StaleObjectError as error:
            # Django marks the enclosing atomic block for rollback on any
            # exception in a save. When the conditional UPDATE was the save's
            # first statement nothing was written, so the transaction is as
            # good as before: clear the mark (transaction.set_rollback, as
            # after a savepoint rollback) so the caller can re-read and retry.
            alias = error.__dict__.pop("_wrote_nothing_on", None)
            if alias is not None and connections[alias].in_atomic_block:
                transaction.set_rollback(False, using=alias)
            raise

    save_base.alters_data = True  # type: ignore[attr-defined]

    def _save_table(  # type: ignore[no-untyped-def]
        self,
        raw=False,
        cls=None,
        force_insert=False,
        force_update=False,
        using=None,
        update_fields=None,
    ):
        table = cls or self.__class__
        # Raw saves (loaddata) write fixtures as they are, version included.
        if raw or not _holds_version(table):
            return super()._save_table(  # type: ignore[misc]
                raw, cls, force_insert, force_update, using, update_fields
            )
        if self._state.adding and not (force_update or update_fields):
            # A new instance never overwrites a row: Django would UPDATE a row
            # with the same pk first, whatever its version. Inserting at once
            # also saves that UPDATE; an existing pk fails as IntegrityError.
            force_insert = True
        if force_insert:
            return super()._save_table(  # type: ignore[misc]
                raw, cls, force_insert, force_update, using, update_fields
            )
        self.__dict__[_EXPECTED] = self._read_version()
        try:
            return super()._save_table(  # type: ignore[misc]
                raw, cls, force_insert, force_update, using, update_fields
            )
        finally:
            self.__dict__.pop(_EXPECTED, None)

    def _do_update(
        self,
        base_qs: QuerySet[Any],
        using: str | None,
        pk_val: Any,
        values: Collection[tuple[Any, Any, Any]],
        update_fields: Any,
        forced_update: bool,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        expected = self.__dict__.get(_EXPECTED)
        if expected is None:  # another table of a multi-table model
            return super()._do_update(
                base_qs, using, pk_val, values, update_fields, forced_update, *args, **kwargs
            )
        field = self._meta.get_field(VERSION)
        # update_fields may leave the version out of values; it is always
        # written, so that every change moves the version on.
        versioned = [value for value in values if value[0].attname != VERSION]
        versioned.append((field, None, expected + 1))
        updated = super()._do_update(
            base_qs.filter(**{VERSION: expected}),
            using,
            pk_val,
            versioned,
            update_fields,
            forced_update,
            *args,
            **kwargs,
        )
        if not updated:
            # Raised here, before Django would fall back to an INSERT (which
            # would bring a deleted row back) or raise its own DatabaseError.
            error = StaleObjectError(type(self), pk_val, expected)
            if not base_qs.model._meta.parents:  # the first table a save writes
                error.__dict__["_wrote_nothing_on"] = using or base_qs.db
            raise error
        self.version = expected + 1
        return updated

    def delete(
        self, using: Any | None = None, keep_parents: bool = False
    ) -> tuple[int, dict[str, int]]:
        """Delete the row only if it is still at this instance's version, else ``StaleObjectError``."""
        if self.pk is None:
            return super().delete(using=using, keep_parents=keep_parents)  # Django's error
        using = using or router.db_for_write(self.__class__, instance=self)
        expected = self._read_version()
        table = _version_table(type(self))
        with transaction.atomic(using=using, savepoint=False):
            # This UPDATE takes the row's lock, so no writer can change the row
            # between the version check and the delete.
            rows = table._base_manager.using(using).filter(pk=self.pk, **{VERSION: expected})
            if rows.update(**{VERSION: expected + 1}):
                return super().delete(using=using, keep_parents=keep_parents)
        # Raised outside the block: nothing was written, and the enclosing
        # transaction stays usable.
        raise StaleObjectError(type(self), self.pk, expected)

    delete.alters_data = True  # type: ignore[attr-defined]

    def _read_version(self) -> int:
        if VERSION not in self.__dict__:
            raise ValueError(
                f"{self._meta.label} pk={self.pk!r} was loaded without its version "
                "field (only() or defer()), so the version it was read at is unknown; "
                "load 'version' with the fields you save."
            )
        if self.__dict__.get(_LOADED_LATE):
            raise ValueError(
                f"{self._meta.label} pk={self.pk!r} was loaded without its version "
                "field (only() or defer()), and reading instance.version later loaded "
                "the row's current version, not the one its other fields were read at; "
                "load 'version' with the fields you save, or set instance.version to the "
                "version the client read."
            )
        version = self.__dict__[VERSION]
        if isinstance(version, str) and _is_digits(version):
            # The version a form or a query string carried: checked as its number.
            version = self.__dict__[VERSION] = int(version)
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError(
                f"{self._meta.label} pk={self.pk!r}: version is {version!r}; it must be "
                "the integer version the instance was read at, or its digits as a str "
                "(do not assign an expression such as F('version') + 1: saving adds 1 "
                "itself)."
            )
        return version


class _VersionAttribute(DeferredAttribute):
    """The descriptor of ``version``: Django's, remembering a version loaded late.

    Django loads a deferred field on its first read, from the row as it is
    then; for ``version`` that is not the version the instance was read at,
    so the instance is marked and its save refused (``_read_version``). A
    version the caller sets (the one a client read) clears the mark.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        if VERSION in data:
            return data[VERSION]
        value = super().__get__(instance, cls)  # refresh_from_db(fields=["version"])
        data[_LOADED_LATE] = True
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        data = instance.__dict__
        data[VERSION] = value
        data.pop(_LOADED_LATE, None)


def _install_version_attribute(sender: type[models.Model], **kwargs: Any) -> None:
    # Django gives each concrete model the descriptor of the fields it holds
    # when the class is created; the version's is replaced once it is.
    attribute = sender.__dict__.get(VERSION)
    if issubclass(sender, VersionedModel) and type(attribute) is DeferredAttribute:
        setattr(sender, VERSION, _VersionAttribute(attribute.field))


class_prepared.connect(_install_version_attribute)


def _is_digits(value: str) -> bool:
    return 0 < len(value) <= _MAX_DIGITS and value.isascii() and value.isdigit()


def _version_table(model: type[models.Model]) -> type[models.Model]:
    """The concrete model whose table holds the version column."""
    return model._meta.get_field(VERSION).model._meta.concrete_model  # type: ignore[return-value]


def _holds_version(table: type[models.Model]) -> bool:
    return any(field.attname == VERSION for field in table._meta.local_concrete_fields)


def __getattr__(name: str) -> Any:
    # transition() lives in idempotency/transitions.py, which imports this
    # module; loading it on first access keeps either import order working.
    if name == "transition":
        from idempotency.transitions import transition

        return transition
    raise AttributeError(f"module 'idempotency.versioning' has no attribute {name!r}")
