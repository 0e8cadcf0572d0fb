"""``transition()``: move a state field with one conditional ``UPDATE``.

Exported as ``idempotency.versioning.transition`` (contract section 9);
docs/transitions.md gives the rules, and why an instance of a
``VersionedModel`` must also still be at the version it was read at.
"""

from __future__ import annotations

import operator
from collections.abc import Collection
from functools import reduce
from typing import Any

from django.db import connections, models, router
from django.db.models import F, Q, QuerySet

from idempotency.versioning import VERSION, StaleObjectError, VersionedModel, _version_table

__all__ = ["transition"]


def transition(target: models.Model | QuerySet[Any], field: str, source: Any, to: Any) -> bool:
    """Move ``field`` from ``source`` (one value or a collection) to ``to`` with one ``UPDATE``.

    Returns ``True`` when this call changed a row, ``False`` when no row was
    in a source state (another caller had already moved it). On an instance
    the attribute changes only when the call won. On a ``VersionedModel``
    the version is bumped with it; an instance must also still be at the
    version it was read at, else ``StaleObjectError`` (docs/transitions.md).
    """
    if isinstance(target, QuerySet):
        return _transition_rows(target, field, _sources(source, to), to)
    if isinstance(target, models.Model):
        return _transition_instance(target, field, _sources(source, to), to)
    raise TypeError(
        f"transition() takes a model instance or a queryset, not {type(target).__name__}: "
        "transition(payment, 'status', 'paid', 'refunded') or "
        "transition(Payment.objects.filter(pk=pk), 'status', 'paid', 'refunded')."
    )


def _sources(source: Any, to: Any) -> list[Any]:
    if isinstance(source, (str, bytes)) or not isinstance(source, Collection):
        sources = [source]
    else:
        sources = list(source)
    if not sources:
        raise ValueError("transition(): source is empty; pass the state (or states) to move from.")
    if any(to == value for value in sources):
        raise ValueError(
            f"transition(): to={to!r} is also a source state, so the call could never "
            "tell a winner from a loser; a transition must leave its source states."
        )
    return sources


def _state_field(model: type[models.Model], name: str) -> Any:
    field = next((f for f in model._meta.concrete_fields if name in (f.name, f.attname)), None)
    if field is None or field.primary_key or field.attname == VERSION:
        raise ValueError(
            f"transition(): {name!r} is not a concrete, non-key field of "
            f"{model._meta.label} that a transition can move."
        )
    return field


def _in_source(field: Any, sources: list[Any]) -> Q:
    # An exact lookup turns None into IS NULL; IN would silently drop it.
    values = [value for value in sources if value is not None]
    conditions = [Q(**{f"{field.name}__in": values})] if values else []
    if len(values) < len(sources):
        conditions.append(Q(**{f"{field.name}__isnull": True}))
    return reduce(operator.or_, conditions)


def _transition_rows(queryset: QuerySet[Any], name: str, sources: list[Any], to: Any) -> bool:
    model = queryset.model
    field = _state_field(model, name)
    if field.model._meta.concrete_model is not model._meta.concrete_model:
        raise ValueError(
            f"transition(): {name!r} is a column of {field.model._meta.label}, not of "
            f"{model._meta.label} (multi-table inheritance); pass a queryset of "
            f"{field.model.__name__} so that one UPDATE of its table checks the state."
        )
    changes: dict[str, Any] = {field.name: to}
    if issubclass(model, VersionedModel):
        _same_table(model, field)
        changes[VERSION] = F(VERSION) + 1
    rows = queryset.filter(_in_source(field, sources))
    if rows.query.count_active_tables() > 1:
        # A filter across a join makes Django replace the UPDATE's WHERE with
        # "pk IN (...)" (selected first on MySQL and MariaDB), which would drop
        # the state condition and let two callers both win. Select the rows
        # first, then move only those still in a source state.
        keys = list(queryset.values_list("pk", flat=True))
        # _db: the alias of an explicit .using(), None to let the router pick.
        rows = model._base_manager.using(getattr(queryset, "_db", None)).filter(pk__in=keys)
        rows = rows.filter(_in_source(field, sources))
    return bool(rows.update(**changes))


def _transition_instance(instance: models.Model, name: str, sources: list[Any], to: Any) -> bool:
    model = type(instance)
    if instance.pk is None:
        raise ValueError(
            f"transition(): this {model._meta.label} has no primary key; save it first."
        )
    field = _state_field(model, name)
    table = field.model._meta.concrete_model
    using = router.db_for_write(model, instance=instance)
    rows = table._base_manager.using(using).filter(pk=instance.pk)
    changes: dict[str, Any] = {field.name: to}
    expected = None
    if isinstance(instance, VersionedModel):
        _same_table(model, field)
        expected = instance._read_version()
        rows = rows.filter(**{VERSION: expected})
        changes[VERSION] = expected + 1
    if rows.filter(_in_source(field, sources)).update(**changes):
        setattr(instance, field.name if isinstance(to, models.Model) else field.attname, to)
        if expected is not None:
            instance.__dict__[VERSION] = expected + 1
        return True
    if expected is not None and not _moved_on(table, instance.pk, field, sources, using):
        raise StaleObjectError(model, instance.pk, expected)
    return False


def _moved_on(
    table: type[models.Model], pk: Any, field: Any, sources: list[Any], using: str
) -> bool:
    """After a lost versioned transition: is the row out of the source states?

    False when the row is gone or still in a source state, that is when the
    version check, not the state check, failed: the instance is stale. A
    locking read inside a transaction sees the latest row even under
    MariaDB's REPEATABLE READ snapshot.
    """
    current = table._base_manager.using(using).filter(pk=pk)
    if connections[using].in_atomic_block:
        current = current.select_for_update()
    found = list(current.values_list(field.attname, flat=True)[:1])
    if not found:
        return False
    keys = [value.pk if isinstance(value, models.Model) else value for value in sources]
    return not any(found[0] == key for key in keys)


def _same_table(model: type[models.Model], field: Any) -> None:
    if _version_table(model) is not field.model._meta.concrete_model:
        raise ValueError(
            f"transition(): {model._meta.label}.{field.name} and its version live in "
            "different tables (multi-table inheritance), so one UPDATE cannot move "
            "the state and check the version; put VersionedModel on the model that "
            f"holds {field.name!r}."
        )
