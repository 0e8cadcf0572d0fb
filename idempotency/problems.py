"""Every error the package answers with, as RFC 9457 problem details.

The engine raises these; the doors render them (``render_problem`` for plain
Django, DRF's exception handling for DRF views), so no error of ours ever
becomes a 500 with a traceback. Each class carries its default ``detail``;
docs/http.md lists every slug.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.http import HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Tag URIs (RFC 4151) identify a problem type without promising a page at the
# address.
TYPE_PREFIX = "tag:django-idempotency,2026:"


class Problem(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"
    detail: str = "The request cannot be processed."
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        if retry_after is not None:
            self.retry_after = retry_after

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug

    def as_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class KeyMissing(Problem):
    status = 400
    title = "Idempotency key required"
    slug = "key-missing"
    detail = "This endpoint requires an idempotency key; send a new unique value (a UUID) for each operation."


class KeyInvalid(Problem):
    status = 400
    title = "Invalid idempotency key"
    slug = "key-invalid"
    detail = "The idempotency key is not valid."
    empty = "The idempotency key is empty; send a unique value such as a UUID."
    several = (
        "The idempotency key header holds a list or was sent twice; send exactly one key "
        '(quote a key that contains a comma: "a,b").'
    )
    not_printable = "The idempotency key may contain only printable ASCII characters."


class AnonymousRefused(Problem):
    status = 400
    title = "Idempotency key from an unidentified caller"
    slug = "anonymous-refused"
    detail = (
        "This site does not accept idempotency keys from callers that are not signed in "
        "(or have no session); sign in, or send the request without a key."
    )


class TokenInvalid(Problem):
    status = 400
    title = "Invalid idempotency token"
    slug = "token-invalid"
    detail = (
        "The form's idempotency token is missing, altered, expired or was issued to "
        "someone else; reload the form and submit it again."
    )


class BodyMalformed(Problem):
    status = 400
    title = "Malformed request body"
    slug = "body-malformed"
    detail = "The multipart request body cannot be parsed, so it cannot be fingerprinted."


class NotAcceptable(Problem):
    status = 406
    title = "The stored response is not acceptable"
    slug = "response-not-acceptable"
    detail = (
        "The response stored for this idempotency key has a media type this request's "
        "Accept header excludes; retry with the Accept header of the first request."
    )


class RequestInProgress(Problem):
    status = 409
    title = "A request with this idempotency key is in progress"
    slug = "request-in-progress"
    detail = (
        "A request with this idempotency key is still being processed; retry after the "
        "time in Retry-After."
    )
    contended = (
        "A concurrent request with this idempotency key held a lock this one needed; "
        "it was rolled back. Retry with the same key."
    )
    retry_after = 1
    # How long the running request's lock still holds, when the store knows:
    # functions and tasks retry after it; HTTP clients after Retry-After.
    lock_remaining: timedelta | None = None


class RequestSuperseded(Problem):
    status = 409
    title = "This request lost its idempotency lock"
    slug = "request-superseded"
    detail = (
        "This request's lock expired and another request with the same idempotency key "
        "took over; this one was rolled back."
    )
    retry_after = 1


class StaleObject(Problem):
    status = 409
    title = "The object was changed by another request"
    slug = "stale-object"
    detail = (
        "The object was changed by another request since it was read; nothing was "
        "written. Read it again and retry."
    )


class ResponseNotReplayable(Problem):
    # 410: the request was executed, and its response is gone for good; a
    # client that retries the same key will never get it.
    status = 410
    title = "The original response cannot be replayed"
    slug = "response-not-replayable"
    detail = (
        "The request with this idempotency key was executed, but its response was "
        "streamed or too large to store, so it cannot be replayed."
    )


class RequestTooLarge(Problem):
    status = 413
    title = "Request body too large to fingerprint"
    slug = "request-too-large"
    detail = "The request body is larger than this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)."


class KeyReused(Problem):
    # draft-ietf-httpapi-idempotency-key-header, section 2.7: 422 for a key
    # reused with a different request payload.
    status = 422
    title = "Idempotency key reused for a different request"
    slug = "key-reused"
    detail = (
        "This idempotency key was used for a request with a different method, path or "
        "body, or by another caller; use a new key for a new operation."
    )


class Misconfigured(Problem):
    # The project's SCOPE or FINGERPRINT function failed: the request cannot be
    # protected, so it is not run; the log has the traceback.
    status = 500
    title = "Idempotency is misconfigured"
    slug = "misconfigured"
    detail = (
        "This request could not be checked for duplicates because the site's idempotency "
        "configuration failed; it was not run. The site's operators have the details."
    )


class DurableBlockRefused(Misconfigured):
    # The view opened transaction.atomic(durable=True) inside the package's
    # own transaction, which Django refuses with a RuntimeError.
    detail = (
        "This view opens a durable atomic block (transaction.atomic(durable=True)), which "
        "cannot run inside the transaction the package runs it in; it must be declared "
        "@idempotent(atomic=False) (idempotency_atomic = False on IdempotencyMixin). The "
        "request was rolled back and its idempotency key released."
    )


class StoreUnavailable(Problem):
    status = 503
    title = "Idempotency record store unavailable"
    slug = "store-unavailable"
    detail = (
        "The idempotency record store cannot be reached; the request was not run. "
        "Retry with the same key."
    )
    while_storing = (
        "The idempotency record store failed while storing the response; the request "
        "was rolled back. Retry with the same key."
    )
    retry_after = 5


def render_problem(problem: Problem) -> HttpResponse:
    response = HttpResponse(
        json.dumps(problem.as_dict()), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    if problem.retry_after is not None:
        response["Retry-After"] = str(problem.retry_after)
    return response
