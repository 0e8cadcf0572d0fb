"""A broken rule, and the helpers every rule uses to describe one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Invalid:
    """A broken rule: ``TypeError`` for a wrong type, ``ValueError`` for a wrong value.

    ``ImportError`` when a dotted path does not import.
    """

    error: type[Exception]
    message: str

    def exception(self) -> Exception:
        return self.error(self.message)


def quote(value: object) -> str:
    """``repr`` for a message: short, and safe for objects whose ``repr`` raises."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_collection(value: object) -> bool:
    return isinstance(value, Collection) and not isinstance(
        value, str | bytes | bytearray | Mapping
    )
