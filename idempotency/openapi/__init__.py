"""drf-spectacular: the schema documents what the package adds to each idempotent
operation (contract section 10). docs/openapi.md shows the one line that turns
it on:

    SPECTACULAR_SETTINGS = {
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "idempotency.openapi.postprocess_schema",
        ],
    }

``operations`` finds the idempotent operations of a generated schema, as the
doors decide at request time; ``document`` adds the key header, the replay
header and the package's answers to each, next to what it already declares.
"""

from __future__ import annotations

from typing import Any

from idempotency.openapi.document import Json, document
from idempotency.openapi.operations import idempotent_operations


def postprocess_schema(
    result: Json, generator: Any, request: Any = None, public: bool = False, **kwargs: Any
) -> Json:
    """Document the idempotency key, the replay header and the package's error
    answers on every idempotent operation of ``result``; leave the rest as it is."""
    components: Json | None = None
    for operation, view, options in idempotent_operations(result, generator, request):
        if components is None:
            components = result.setdefault("components", {})
        document(operation, view, options, components)
    return result


__all__ = ["postprocess_schema"]
