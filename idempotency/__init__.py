"""Make unsafe operations safe to retry: idempotency keys for Django and DRF.

The package root stays import-light: Django imports it while loading apps, so
the public names are imported on first access rather than here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from idempotency.decorators import idempotent
    from idempotency.functions import (
        IdempotencyError,
        InProgressError,
        KeyReusedError,
        idempotent_function,
    )
    from idempotency.tokens import issue_token

# Public name -> the module that defines it.
_PUBLIC = {
    "idempotent": "idempotency.decorators",
    "idempotent_function": "idempotency.functions",
    "IdempotencyError": "idempotency.functions",
    "KeyReusedError": "idempotency.functions",
    "InProgressError": "idempotency.functions",
    "issue_token": "idempotency.tokens",
}

__all__ = [
    "IdempotencyError",
    "InProgressError",
    "KeyReusedError",
    "idempotent",
    "idempotent_function",
    "issue_token",
]  # the keys of _PUBLIC
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'idempotency' has no attribute {name!r}")
    return getattr(import_module(module), name)
