"""What an idempotent operation's schema gains: the key header, the replay
header, the package's 400, 409, 422 and 503 answers (shared components), and
for token views the form field. Everything is added next to what the
operation declares; nothing it declares is replaced (docs/openapi.md).
"""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import views

from idempotency.conf import idempotency_settings
from idempotency.options import ViewOptions
from idempotency.problems import PROBLEM_CONTENT_TYPE
from idempotency.responses import REPLAYED_HEADER
from idempotency.tokens import FIELD

Json = dict[str, Any]

# Printable ASCII with no space at either end (a header value's ends are
# trimmed): what idempotency.keys.parse_key accepts, besides its list rule.
KEY_PATTERN = "^[!-~]([ -~]*[!-~])?$"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

PROBLEM = {
    "type": "object",
    "description": (
        "Problem details (RFC 9457), as django-idempotency answers every error: "
        "`type` names the problem, `detail` says what to do."
    ),
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
    },
    "required": ["type", "title", "status", "detail"],
}
REPLAYED = {
    "description": (
        "`true` when this is the stored response of an earlier request with the same "
        "idempotency key, replayed without running the operation again."
    ),
    "schema": {"type": "string", "enum": ["true"]},
}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying with the same idempotency key.",
    "schema": {"type": "integer", "minimum": 0},
}
# The package's own answers (contract section 10): status -> component name, description.
ANSWERS = {
    "400": (
        "IdempotencyKeyRefused",
        "The idempotency key was refused, and the operation did not run: missing where "
        "required, empty, too long, not printable ASCII, sent twice, a form token that "
        "is not valid, or sent by a caller this site takes no keys from.",
    ),
    "409": (
        "IdempotencyConflict",
        "A request with this idempotency key is still running (retry after Retry-After), "
        "this request lost its lock to a retry, or an object it changes was changed by "
        "another request. Nothing was stored: retry with the same key.",
    ),
    "422": (
        "IdempotencyKeyReused",
        "This idempotency key was used for a different request (another method, path or "
        "body, or another caller). Use a new key for a new operation.",
    ),
    "503": (
        "IdempotencyStoreUnavailable",
        "The idempotency record store cannot be reached, and the operation did not run. "
        "Retry with the same key after Retry-After.",
    ),
}
KEY_DESCRIPTION = (
    "A value unique to this operation (a UUID), chosen by the client and sent unchanged "
    "on every retry of it: a retry gets the first response back, with "
    "`Idempotent-Replayed: true`, instead of running the operation again. A form "
    f"submission may send it as the `{FIELD}` field instead."
)
TOKEN_DESCRIPTION = (
    " This operation takes only a one-time token this site issued to the caller "
    "(`{% idempotency_token %}` or the token endpoint); any other value is refused."
)


def document(operation: Json, view: Any, options: ViewOptions, components: Json) -> None:
    """Add the key, the replay header and the package's answers to ``operation``."""
    required = idempotency_settings.REQUIRED if options.required is None else options.required
    add_key_parameter(operation, required, options.token, components)
    # A DRF view with the project's own EXCEPTION_HANDLER hands the package's
    # errors to it (idempotency.drf.ProblemException): their format is the project's.
    problems = getattr(view, "get_exception_handler", lambda: None)() is views.exception_handler
    problem = {"$ref": register(components, "schemas", "Problem", PROBLEM)} if problems else None
    answers = {
        status: package_answer(status, text, problem) for status, (_, text) in ANSWERS.items()
    }
    responses = operation.setdefault("responses", {})
    ours = {s for s, r in responses.items() if resolve(r, components) == answers.get(s)}
    replayed = {"$ref": register(components, "headers", "IdempotentReplayed", REPLAYED)}
    for status in list(responses):
        if replayable(status) and status not in ours:
            add_header(own(responses, status, components), REPLAYED_HEADER, replayed)
    for status, (name, _) in ANSWERS.items():
        if status in ours:
            continue  # documented already (the hook ran twice)
        if status not in responses:
            answer = answers[status]
            responses[status] = (
                {"$ref": register(components, "responses", name, answer)} if problem else answer
            )
            continue
        response = own(responses, status, components)  # the project's: add to it
        if problem is not None:
            add_problem(response.setdefault("content", {}), problem)
        if status in ("409", "503"):
            add_header(response, "Retry-After", RETRY_AFTER)
    if options.token:
        add_token_field(operation)


def add_problem(content: Json, problem: Json) -> None:
    """Document the package's problem body in ``content``. When the operation
    declares its own ``application/problem+json`` body for the status, either
    body may come (``anyOf``): theirs from the view, ours from the package."""
    media = content.setdefault(PROBLEM_CONTENT_TYPE, {})
    schema = media.get("schema")
    if schema is None:
        media["schema"] = dict(problem)
    elif schema != problem and problem not in schema.get("anyOf", ()):
        media["schema"] = {"anyOf": [schema, dict(problem)]}


def package_answer(status: str, description: str, problem: Json | None) -> Json:
    answer: Json = {"description": description}
    if status in ("409", "503"):
        # Every 503 of the package says when to retry; a 409 for a stale object does not.
        answer["headers"] = {"Retry-After": {**RETRY_AFTER, "required": status == "503"}}
    if problem is not None:
        answer["content"] = {PROBLEM_CONTENT_TYPE: {"schema": dict(problem)}}
    return answer


def add_key_parameter(operation: Json, required: bool, token: bool, components: Json) -> None:
    header = idempotency_settings.HEADER
    for parameter in operation.get("parameters", ()):
        declared = resolve(parameter, components)
        if declared.get("in") == "header" and str(declared.get("name")).lower() == header.lower():
            return  # the project documents the header itself
    operation.setdefault("parameters", []).append(
        {
            "in": "header",
            "name": header,
            "required": required,
            "description": KEY_DESCRIPTION + (TOKEN_DESCRIPTION if token else ""),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": idempotency_settings.KEY_MAX_LENGTH,
                "pattern": KEY_PATTERN,
            },
        }
    )


def add_token_field(operation: Json) -> None:
    """A token view's forms carry the key as a field: add it to their body schemas."""
    field = {
        "type": "object",
        "properties": {FIELD: {"type": "string", "description": "The one-time idempotency token."}},
    }
    content = operation.get("requestBody", {}).get("content", {})  # a $ref body is shared: left
    for media_type in FORM_TYPES:
        media = content.get(media_type)
        if media is None or field in media.get("schema", {}).get("allOf", ()):
            continue
        media["schema"] = {"allOf": [media["schema"], field]} if "schema" in media else field


def replayable(status: str) -> bool:
    """Whether a response of this status may be stored, and so come back replayed."""
    if status.startswith("5"):
        return False  # 5xx is never stored
    return not (status.isdigit() and int(status) in idempotency_settings.RELEASE_STATUSES)


def add_header(response: Json, name: str, header: Json) -> None:
    headers = response.setdefault("headers", {})
    if all(declared.lower() != name.lower() for declared in headers):
        headers[name] = copy.deepcopy(header)


def own(responses: Json, status: str, components: Json) -> Json:
    """The operation's response for ``status``, as a dict of its own to add to: a
    referenced (shared) response is copied in, so other operations keep theirs."""
    response: Json = responses[status]
    if "$ref" in response:
        response = responses[status] = copy.deepcopy(resolve(response, components))
    return response


def resolve(value: Json, components: Json) -> Json:
    reference = value.get("$ref")
    if not isinstance(reference, str) or not reference.startswith("#/components/"):
        return value
    section, _, name = reference.removeprefix("#/components/").partition("/")
    found: Json = components.get(section, {}).get(name, value)
    return found


def register(components: Json, section: str, name: str, value: Json) -> str:
    """Add a component under ``name`` (``name2``, ... when the project's schema
    already has another one of that name) and return its reference."""
    entries = components.setdefault(section, {})
    candidate, number = name, 1
    while candidate in entries and entries[candidate] != value:
        number += 1
        candidate = f"{name}{number}"
    entries[candidate] = copy.deepcopy(value)
    return f"#/components/{section}/{candidate}"
