"""Views for the tests: one per entry point, all doing the same work.

``perform`` writes a Charge (so tests can count executions) and answers as the
request body asks: ``{"amount": 5, "status": 201, "sleep": 0.5, "fail": true,
"kind": "json" | "csv" | "stream" | "file" | "big" | "binary"}``.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import permissions, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge


class ViewFailed(Exception):
    pass


def _options(request: Any) -> dict[str, Any]:
    django_request = getattr(request, "_request", request)
    if django_request.content_type == "application/json" and django_request.body:
        return dict(json.loads(django_request.body))
    return {key: django_request.POST.get(key) for key in django_request.POST}


def perform(request: Any, drf: bool = False) -> Any:
    options = _options(request)
    if options.get("sleep"):
        time.sleep(float(options["sleep"]))
    charge = Charge.objects.create(amount=int(options.get("amount") or 0), label=request.method)
    if options.get("fail"):
        raise ViewFailed("the view raised")
    status = int(options.get("status") or 201)
    kind = options.get("kind") or "json"
    if kind == "csv":
        response: Any = HttpResponse(
            f"id,amount\n{charge.pk},{charge.amount}\n", content_type="text/csv", status=status
        )
        response["Content-Disposition"] = 'attachment; filename="charge.csv"'
    elif kind == "binary":
        response = HttpResponse(
            bytes(range(256)) * 4, content_type="application/octet-stream", status=status
        )
    elif kind == "stream":
        response = StreamingHttpResponse((f"chunk{i}\n" for i in range(3)), status=status)
    elif kind == "file":
        response = FileResponse(io.BytesIO(b"file-bytes"), filename="f.bin")
    elif kind == "big":
        response = HttpResponse(b"x" * int(options.get("size") or 2 * 1024 * 1024), status=status)
    else:
        body = {"id": charge.pk, "amount": charge.amount}
        response = Response(body, status=status) if drf else JsonResponse(body, status=status)
    response["Location"] = f"/charges/{charge.pk}"
    response["X-Not-Replayed"] = "yes"
    if not drf or kind != "json":
        response.set_cookie("session-ish", "secret")
    return response


@idempotent
def plain_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent(required=True)
def plain_required_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@permission_classes([permissions.AllowAny])
@idempotent
def api_function_view(request: Any) -> Any:
    if request.method == "GET":
        return Response({"charges": Charge.objects.count()})
    return perform(request, drf=True)


@api_view(["POST"])
@permission_classes([permissions.IsAuthenticated])
@idempotent
def api_authenticated_view(request: Any) -> Any:
    return perform(request, drf=True)


class ChargeAPIView(APIView):
    permission_classes = [permissions.AllowAny]

    @idempotent
    def post(self, request: Any) -> Any:
        return perform(request, drf=True)


class ChargeViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def list(self, request: Any) -> Any:
        return Response({"charges": Charge.objects.count()})

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)

    def update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    def partial_update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    def destroy(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    @action(detail=True, methods=["post"])
    def refund(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)


class AuthenticatedViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class ActionViewSet(viewsets.ViewSet):
    """An @action decorated directly, without the mixin."""

    permission_classes = [permissions.AllowAny]

    @action(detail=False, methods=["post"])
    @idempotent
    def refund(self, request: Any) -> Any:
        return perform(request, drf=True)


@method_decorator(idempotent, name="post")
class PlainClassView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return perform(request)  # type: ignore[no-any-return]


# Views for tests/concurrency. Their imports are local so that this block
# stays an append to the module.


def process_view(request: HttpRequest) -> HttpResponse:
    """Where a request ran: the worker's pid, and whether Django wrapped the
    view in a transaction (``ATOMIC_REQUESTS``). Not idempotent; writes nothing."""
    import os

    from django.db import connection

    return JsonResponse({"pid": os.getpid(), "in_atomic_block": connection.in_atomic_block})


@idempotent
def doomed_worker_view(request: HttpRequest) -> HttpResponse:
    """Writes a Charge, then this worker's pid into the file named by the key
    under ``IDEMPOTENCY_TEST_PID_DIR``, then sleeps holding the key's lock:
    a test SIGKILLs the worker there."""
    import os
    from pathlib import Path

    options = _options(request)
    charge = Charge.objects.create(
        amount=int(options.get("amount") or 0), label=f"pid:{os.getpid()}"
    )
    key = Path(request.headers["Idempotency-Key"]).name
    pid_file = Path(os.environ["IDEMPOTENCY_TEST_PID_DIR"]) / key
    pid_file.write_text(str(os.getpid()))
    time.sleep(float(options.get("sleep") or 0))
    return JsonResponse({"id": charge.pk, "amount": charge.amount, "pid": os.getpid()}, status=201)


# Views for the HTTP contract tests (tests/test_*.py). Appended, like the block
# above, so that the shared views stay as they are.

from datetime import timedelta  # noqa: E402

from rest_framework.decorators import throttle_classes  # noqa: E402
from rest_framework.throttling import BaseThrottle  # noqa: E402


def tenant_scope(request: HttpRequest) -> str:
    """A SCOPE hook: callers are told apart by the X-Tenant header."""
    return "tenant:" + request.headers.get("X-Tenant", "none")


@idempotent(scope="tests.testapp.views.tenant_scope")
def tenant_path_scoped_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent(scope=tenant_scope)
def tenant_callable_scoped_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent(ttl=120)
def ttl_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent(required=False)
def optional_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent
def headers_view(request: HttpRequest) -> HttpResponse:
    """Sets every allow-listed header, plus credentials and others that are not."""
    response = perform(request)
    response["ETag"] = '"v1"'
    response["Last-Modified"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    response["Link"] = '</charges/>; rel="collection"'
    response["Content-Language"] = "de"
    response["Content-Disposition"] = 'inline; filename="charge.json"'
    response["WWW-Authenticate"] = 'Bearer realm="charges"'
    response["Cache-Control"] = "no-store"
    # A raw header, as a proxying view would copy it; Django keeps
    # set_cookie() cookies apart from the headers.
    response["Set-Cookie"] = "raw-session=secret; Path=/"
    for name in ("Authentication-Info", "Proxy-Authentication-Info", "X-Api-Key", "X-CSRFToken"):
        response[name] = f"secret-{name.lower()}"
    # U+2028: Django MIME-encodes it onto two lines, which it cannot set again.
    response["X-Odd"] = "line\u2028separator"
    return response  # type: ignore[no-any-return]


class DenyThrottle(BaseThrottle):
    """Throttles every request, so tests need no cache state."""

    def allow_request(self, request: Any, view: Any) -> bool:
        return False

    def wait(self) -> float:
        return 7


@api_view(["POST"])
@throttle_classes([DenyThrottle])
@idempotent
def throttled_view(request: Any) -> Any:
    return perform(request, drf=True)


@api_view(["POST"])
@permission_classes([permissions.IsAdminUser])
@idempotent
def admin_only_view(request: Any) -> Any:
    return perform(request, drf=True)


class ThrottledViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]
    throttle_classes = [DenyThrottle]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class AdminOnlyViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.IsAdminUser]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class ConfiguredViewSet(IdempotencyMixin, viewsets.ViewSet):
    """Every idempotency_* attribute set against the defaults."""

    permission_classes = [permissions.AllowAny]
    idempotency_scope = "tests.testapp.views.tenant_scope"
    idempotency_required = True
    idempotency_ttl = timedelta(minutes=2)
    idempotency_methods = ("post", "patch")  # lower case on purpose

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)

    def update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    def partial_update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)


class OptionalViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]
    idempotency_required = False

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class DecoratedActionMixinViewSet(IdempotencyMixin, viewsets.ViewSet):
    """The mixin and @idempotent on the same action: wrapped once."""

    permission_classes = [permissions.AllowAny]

    @action(detail=False, methods=["post"])
    @idempotent
    def refund(self, request: Any) -> Any:
        return perform(request, drf=True)


@api_view(["POST", "PUT"])
@permission_classes([permissions.AllowAny])
@idempotent
def echo_view(request: Any) -> Any:
    """Answers with what DRF parsed, after the fingerprint read the body."""
    Charge.objects.create(amount=0, label="echo")
    files = {name: upload.read().decode() for name, upload in request.FILES.items()}
    fields = {name: request.data[name] for name in request.data if name not in files}
    return Response({"fields": fields, "files": files}, status=201)


class ReadsDataPermission(permissions.BasePermission):
    """Reads request.data before the view, so DRF consumes the body stream first."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return "forbidden" not in request.data


@api_view(["POST"])
@permission_classes([ReadsDataPermission])
@idempotent
def reads_data_first_view(request: Any) -> Any:
    Charge.objects.create(amount=int(request.data.get("amount") or 0), label="reads-data")
    return Response({"amount": request.data.get("amount")}, status=201)


# Views for tests/test_transactions.py and tests/test_queries.py. Appended,
# like the blocks above, with local imports.


@idempotent
def atomic_depth_view(request: HttpRequest) -> HttpResponse:
    """Writes a Charge and answers how many atomic blocks the view runs in:
    1 (the package's) without ATOMIC_REQUESTS, 2 with it."""
    from django.db import connection

    charge = Charge.objects.create(amount=0, label="atomic-depth")
    return JsonResponse(
        {"id": charge.pk, "atomic_blocks": len(connection.atomic_blocks)}, status=201
    )


@idempotent
def superseded_view(request: HttpRequest) -> HttpResponse:
    """Loses its own record while it runs: on a second database connection,
    its lock is expired (time as data) and a retry of the same request takes
    the record over through the real store; then the view does its work."""
    from datetime import datetime, timedelta, timezone

    from django.db import connections

    from idempotency.keys import digest
    from idempotency.models import IdempotencyRecord
    from idempotency.stores import Attempt, ClaimOutcome
    from idempotency.stores.database import DatabaseRecordStore

    key = digest(request.headers["Idempotency-Key"])
    other = connections.create_connection("default")
    try:
        table = other.ops.quote_name(IdempotencyRecord._meta.db_table)
        where = f"WHERE scope = %s AND {other.ops.quote_name('key')} = %s"
        long_ago = other.ops.adapt_datetimefield_value(datetime(2000, 1, 1, tzinfo=timezone.utc))
        with other.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET locked_until = %s {where}", [long_ago, "anonymous", key]
            )
            cursor.execute(f"SELECT fingerprint FROM {table} {where}", ["anonymous", key])
            (fingerprint,) = cursor.fetchone()
        taker = DatabaseRecordStore("default", connection=other)
        claim = taker.claim(
            Attempt(
                scope="anonymous",
                key=key,
                fingerprint=fingerprint,
                method=request.method or "",
                path=request.get_full_path(),
                ttl=timedelta(hours=1),
                lock_for=timedelta(hours=1),
                atomic=False,
            )
        )
        if claim.outcome is not ClaimOutcome.ACQUIRED or not claim.taken_over:
            raise RuntimeError(f"the takeover did not happen: {claim}")
    finally:
        other.close()
    return perform(request)  # type: ignore[no-any-return]


@idempotent
def commit_fails_view(request: HttpRequest) -> HttpResponse:
    """Writes a Charge and a row whose foreign key points nowhere. PostgreSQL
    and SQLite check Django's DEFERRABLE INITIALLY DEFERRED foreign keys at
    COMMIT, so the view returns and the commit fails; InnoDB fails at once."""
    from django.contrib.auth.models import User

    response = perform(request)
    User.groups.through.objects.create(user_id=2**30, group_id=2**30)
    return response  # type: ignore[no-any-return]


@idempotent
def record_view(request: HttpRequest) -> HttpResponse:
    """Answers with its own record as the view sees it while it runs."""
    from idempotency.models import IdempotencyRecord

    Charge.objects.create(amount=0, label="record")
    from idempotency.keys import digest

    record = IdempotencyRecord.objects.get(key=digest(request.headers["Idempotency-Key"]))
    assert record.locked_until is not None
    return JsonResponse(
        {
            "status": record.status,
            "lock_seconds": (record.locked_until - record.created_at).total_seconds(),
        },
        status=201,
    )


@idempotent
def claim_visibility_view(request: HttpRequest) -> HttpResponse:
    """Answers what another database connection sees of this request's own
    record while the view runs: ``["in_progress"]`` once the claim is
    committed, ``[]`` while it is not (SQLite's shared cache: "locked")."""
    from django.db import OperationalError, connections

    from idempotency.keys import digest
    from idempotency.models import IdempotencyRecord

    other = connections.create_connection("default")
    try:
        table = other.ops.quote_name(IdempotencyRecord._meta.db_table)
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {table} WHERE {other.ops.quote_name('key')} = %s",
                [digest(request.headers["Idempotency-Key"])],
            )
            seen: Any = [status for (status,) in cursor.fetchall()]
    except OperationalError as error:
        if "locked" not in str(error):
            raise
        seen = "locked"
    finally:
        other.close()
    charge = Charge.objects.create(amount=0, label="claim-visibility")
    return JsonResponse({"id": charge.pk, "seen": seen}, status=201)


@idempotent
def template_view(request: HttpRequest) -> HttpResponse:
    """A TemplateResponse: Django renders it only after the view returns."""
    from django.template import engines
    from django.template.response import TemplateResponse

    charge = Charge.objects.create(amount=0, label="template")
    template = engines["django"].from_string("<p>charge {{ charge.pk }}</p>")
    return TemplateResponse(request, template, {"charge": charge}, status=201)


# Views for tests/concurrency/test_contention.py. Appended, with local imports.


def _count_execution(request: HttpRequest) -> tuple[Any, bool]:
    """Count this execution in files that survive rollbacks and killed workers.

    Under ``IDEMPOTENCY_TEST_MARKER_DIR``, every execution appends its pid to
    ``<key>.runs``; exactly one creates ``<key>.first`` (O_EXCL). Returns the
    marker path ``<dir>/<key>`` and whether this is the key's first execution.
    """
    import os
    from pathlib import Path

    key = Path(request.headers["Idempotency-Key"]).name
    marker = Path(os.environ["IDEMPOTENCY_TEST_MARKER_DIR"]) / key
    with open(f"{marker}.runs", "a") as runs:
        runs.write(f"{os.getpid()}\n")
    try:
        os.close(os.open(f"{marker}.first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return marker, False
    return marker, True


@idempotent
def fails_first_view(request: HttpRequest) -> HttpResponse:
    """Counts its executions per key and, with ``"fail_first": true`` in the
    body, answers 500 on the first one only (after its Charge, which the
    release rolls back). The count lives in files under
    ``IDEMPOTENCY_TEST_MARKER_DIR`` named by the key, so it survives the
    rollback: ``<key>.first`` is created with O_EXCL by exactly one execution,
    and every execution appends a line to ``<key>.runs``."""
    options = _options(request)
    _markers, first = _count_execution(request)
    time.sleep(float(options.get("sleep") or 0))
    charge = Charge.objects.create(amount=int(options.get("amount") or 0), label="fails-first")
    if first and options.get("fail_first"):
        return JsonResponse({"error": "the first execution fails", "id": charge.pk}, status=500)
    return JsonResponse({"id": charge.pk, "amount": charge.amount}, status=201)


# Views for tests/reliability. Appended, with local imports.


@idempotent
def fault_view(request: HttpRequest) -> HttpResponse:
    """A view that faults are injected into, observable from outside.

    Every execution appends its pid to ``<key>.runs`` under
    ``IDEMPOTENCY_TEST_MARKER_DIR`` (a file, so the count survives rollbacks
    and killed workers), writes a Charge labelled with the key, writes its pid
    to ``<key>.pid`` (a test may SIGKILL it then), and sleeps ``sleep``
    seconds, or ``first_sleep`` on the key's first execution. With
    ``"fail_commit_first": true`` the first execution also writes a row whose
    foreign key points nowhere: PostgreSQL checks Django's DEFERRABLE
    INITIALLY DEFERRED foreign keys at COMMIT, so that commit fails. Each
    execution that returns appends its pid to ``<key>.returned``."""
    import os

    from django.contrib.auth.models import User

    options = _options(request)
    marker, first = _count_execution(request)
    charge = Charge.objects.create(amount=int(options.get("amount") or 0), label=marker.name[:100])
    with open(f"{marker}.pid", "w") as pid:
        pid.write(str(os.getpid()))
    sleep = options.get("first_sleep") if first else None
    time.sleep(float(sleep or options.get("sleep") or 0))
    if first and options.get("fail_commit_first"):
        User.groups.through.objects.create(user_id=2**30, group_id=2**30)
    with open(f"{marker}.returned", "a") as returned:  # the view got this far
        returned.write(f"{os.getpid()}\n")
    return JsonResponse({"id": charge.pk, "pid": os.getpid(), "first": first}, status=201)


# Views for tests/reliability (hostile input, isolation, credentials, large
# bodies, clock skew). Appended, with local imports.


@idempotent
def robust_view(request: HttpRequest) -> HttpResponse:
    """Writes a Charge and answers without reading the body, whatever it is:
    any failure on the way is the package's, not the view's."""
    charge = Charge.objects.create(amount=0, label="robust")
    return JsonResponse({"id": charge.pk, "method": request.method}, status=201)


@api_view(["POST", "PUT", "PATCH", "DELETE"])
@permission_classes([permissions.AllowAny])
@idempotent
def robust_api_view(request: Any) -> Any:
    """``robust_view`` behind DRF: never touches ``request.data``."""
    charge = Charge.objects.create(amount=0, label="robust-api")
    return Response({"id": charge.pk, "method": request.method}, status=201)


@idempotent(ttl=2)
def short_ttl_view(request: HttpRequest) -> HttpResponse:
    """``perform`` with a two-second TTL, for expiry measured on a clock."""
    return perform(request)  # type: ignore[no-any-return]


@idempotent
def credentials_view(request: HttpRequest) -> HttpResponse:
    """Answers with every credential header, and one custom header; tests
    list them all in REPLAY_HEADERS."""
    charge = Charge.objects.create(amount=0, label="credentials")
    response = JsonResponse({"id": charge.pk}, status=201)
    response["Authorization"] = "Bearer response-secret"
    response["Proxy-Authorization"] = "Basic cHJveHk6c2VjcmV0"
    response["WWW-Authenticate"] = 'Bearer realm="r", error="invalid_token"'
    response["Proxy-Authenticate"] = 'Basic realm="proxy"'
    response["Cookie"] = "sessionid=response-secret"
    response["Set-Cookie"] = "raw=response-secret; Path=/"
    response["Authentication-Info"] = 'nextnonce="response-secret"'
    response["Proxy-Authentication-Info"] = 'nextnonce="response-secret"'
    response["X-Api-Key"] = "response-secret"
    response["X-CSRFToken"] = "response-secret"
    response["X-Replayable"] = "yes"
    response.set_cookie("auth-token", "response-secret")
    return response


@idempotent
def secret_echo_view(request: HttpRequest) -> HttpResponse:
    """Echoes the JSON body's ``secret`` in its response, so the stored body
    holds it too; ``status``, ``fail``, ``sleep`` and ``size`` as in perform."""
    options = _options(request)
    time.sleep(float(options.get("sleep") or 0))
    charge = Charge.objects.create(amount=0, label="secret-echo")
    if options.get("fail"):
        raise ViewFailed("the view raised")
    padding = "p" * int(options.get("size") or 0)
    return JsonResponse(
        {"id": charge.pk, "echo": options.get("secret"), "padding": padding},
        status=int(options.get("status") or 201),
    )


@idempotent
def big_stream_view(request: HttpRequest) -> HttpResponse:
    """Streams ``size`` bytes in 64 KiB chunks, never holding them all."""
    options = _options(request)
    Charge.objects.create(amount=0, label="big-stream")
    size = int(options.get("size") or 0)
    chunk = b"s" * 65536

    def chunks() -> Any:
        for start in range(0, size, len(chunk)):
            yield chunk[: size - start]

    return StreamingHttpResponse(chunks(), content_type="application/octet-stream", status=201)


def clock_view(request: HttpRequest) -> HttpResponse:
    """This process's clock and the database's, as Unix timestamps. Not
    idempotent; writes nothing."""
    import os

    from django.db import connection

    from idempotency.stores.dialects import dialect_for

    with connection.cursor() as cursor:
        cursor.execute("SELECT " + dialect_for(connection.vendor).now.replace("%%", "%"))
        (database_now,) = cursor.fetchone()
    return JsonResponse({"pid": os.getpid(), "app": time.time(), "database": str(database_now)})


# Views for tests/test_fingerprint.py: one DRF view per way its body can be
# parsed before the fingerprint. Appended, with local imports.

from rest_framework.decorators import parser_classes  # noqa: E402
from rest_framework.parsers import FileUploadParser, JSONParser  # noqa: E402


class ReadsDataWhenAskedPermission(permissions.BasePermission):
    """Reads request.data before the view when the request carries
    ``X-Read-Data``, so DRF, not the fingerprint, parses the body first."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if "X-Read-Data" in request.headers:
            request.data  # noqa: B018
        return True


class DecimalJSONParser(JSONParser):
    """JSON with exact decimals, as money APIs parse it."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        import decimal

        return json.load(stream, parse_float=decimal.Decimal)


def _seen(request: Any) -> Any:
    """What the view saw: fields, and each file's name and contents."""
    import hashlib

    Charge.objects.create(amount=0, label="fingerprint")
    files = {
        name: [upload.name, hashlib.sha256(upload.read()).hexdigest()]
        for name, upload in request.FILES.items()
    }
    fields = {name: request.data[name] for name in request.data if name not in files}
    return Response({"fields": fields, "files": files}, status=201)


@api_view(["POST", "PUT", "PATCH"])
@permission_classes([ReadsDataWhenAskedPermission])
@idempotent
def fingerprint_form_view(request: Any) -> Any:
    """Multipart, form and JSON bodies, parsed first by DRF on ``X-Read-Data``."""
    return _seen(request)


@api_view(["POST", "PUT"])
@permission_classes([ReadsDataWhenAskedPermission])
@parser_classes([FileUploadParser])
@idempotent
def fingerprint_upload_view(request: Any, filename: str) -> Any:
    """A raw upload through DRF's FileUploadParser."""
    return _seen(request)


@api_view(["POST"])
@permission_classes([ReadsDataPermission])
@parser_classes([DecimalJSONParser])
@idempotent
def fingerprint_decimal_view(request: Any) -> Any:
    """JSON parsed with Decimal by DRF before the view."""
    Charge.objects.create(amount=0, label="fingerprint-decimal")
    return Response({"amount": str(request.data.get("amount"))}, status=201)


# tests/stores: how often each key's view ran, whatever became of its writes.
EXECUTIONS: dict[str, int] = {}
_EXECUTIONS_LOCK = threading.Lock()


@idempotent
def counted_view(request: HttpRequest) -> HttpResponse:
    """``perform``, counting its executions per key in ``EXECUTIONS``; with
    ``fill_redis_port``, the Redis on that port is full when the view returns."""
    with _EXECUTIONS_LOCK:
        key = request.headers["Idempotency-Key"]
        EXECUTIONS[key] = EXECUTIONS.get(key, 0) + 1
    response = perform(request)
    port = _options(request).get("fill_redis_port")
    if port:  # Redis runs out of memory while the view runs
        import redis

        redis.Redis(port=int(port)).config_set("maxmemory", 1)
    return response  # type: ignore[no-any-return]


@idempotent
def dies_after_commit_view(request: HttpRequest) -> HttpResponse:
    """Writes a Charge labelled with the key; its first execution per key
    SIGKILLs its own worker once that write has committed, before the store
    keeps the response (an ``on_commit`` hook of the view's transaction).
    Each execution appends its pid to ``<key>.runs`` under
    ``IDEMPOTENCY_TEST_PID_DIR``; the first creates ``<key>.first`` there."""
    import os
    import signal
    from pathlib import Path

    from django.db import transaction

    key = Path(request.headers["Idempotency-Key"]).name
    marker = Path(os.environ["IDEMPOTENCY_TEST_PID_DIR"]) / key
    with open(f"{marker}.runs", "a") as runs:
        runs.write(f"{os.getpid()}\n")
    charge = Charge.objects.create(amount=int(_options(request).get("amount") or 0), label=key)
    try:
        os.close(os.open(f"{marker}.first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass
    else:
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    return JsonResponse({"id": charge.pk, "pid": os.getpid()}, status=201)
