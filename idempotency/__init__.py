"""Make unsafe HTTP requests safe to retry with the ``Idempotency-Key`` header.

The package root stays import-light: Django imports it while loading apps, so
``idempotent`` is imported on first access rather than here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from idempotency.decorators import idempotent

__all__ = ["idempotent"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "idempotent":
        from idempotency.decorators import idempotent

        return idempotent
    raise AttributeError(f"module 'idempotency' has no attribute {name!r}")
