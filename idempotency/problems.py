"""Every error the package answers with, as RFC 9457 problem details.

The engine raises these; the adapters render them with ``render_problem``, so
no error of ours ever becomes a 500 with a traceback.
"""

from __future__ import annotations

import json

from django.http import HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Tag URIs (RFC 4151) identify a problem type without promising a page at the
# address; docs/http.md lists every slug.
TYPE_PREFIX = "tag:django-idempotency,2026:"


class Problem(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"
    retry_after: int | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug


class KeyMissing(Problem):
    status = 400
    title = "Idempotency key required"
    slug = "key-missing"


class KeyInvalid(Problem):
    status = 400
    title = "Invalid idempotency key"
    slug = "key-invalid"


class RequestTooLarge(Problem):
    status = 413
    title = "Request body too large to fingerprint"
    slug = "request-too-large"


class BodyMalformed(Problem):
    status = 400
    title = "Malformed request body"
    slug = "body-malformed"


class KeyReused(Problem):
    # RFC draft-ietf-httpapi-idempotency-key-header, section 2.7: 422 for a key
    # reused with a different request payload.
    status = 422
    title = "Idempotency key reused for a different request"
    slug = "key-reused"


class RequestInProgress(Problem):
    status = 409
    title = "A request with this idempotency key is in progress"
    slug = "request-in-progress"
    retry_after = 1


class RequestSuperseded(Problem):
    status = 409
    title = "This request lost its idempotency lock"
    slug = "request-superseded"
    retry_after = 1


class ResponseNotReplayable(Problem):
    # 410: the request was executed, and its response is gone for good; a
    # client that retries the same key will never get it.
    status = 410
    title = "The original response cannot be replayed"
    slug = "response-not-replayable"


class StoreUnavailable(Problem):
    status = 503
    title = "Idempotency record store unavailable"
    slug = "store-unavailable"
    retry_after = 5


def render_problem(problem: Problem) -> HttpResponse:
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    response = HttpResponse(
        json.dumps(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    if problem.retry_after is not None:
        response["Retry-After"] = str(problem.retry_after)
    return response
