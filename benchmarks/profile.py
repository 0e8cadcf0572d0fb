"""Where the new key's added time goes: per statement, and per Python function.

In process, with Django's test client on the benchmark's own endpoints (the
plain flavour and the token-authenticated DRF one), so that the profile sees
the package's steps and nothing of gunicorn or HTTP:

- **per statement**: every ``cursor.execute`` timed by a wrapper on the
  connection (the driver's adaptation, the round trip and the server's work),
  grouped by statement, median over the requests;
- **per function**: ``cProfile`` over ``n`` bare requests and ``n`` package
  requests; each function's own time (``tottime``) per request, package minus
  bare, the largest first. A profiler slows Python down, so these are shares,
  not the latency the HTTP scenarios measure.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.test import Client

from benchmarks.harness import AUTHORIZATION, BODY

TOP = 15
PROJECT = Path(__file__).resolve().parent.parent


def _post(client: Client, path: str, key: str | None) -> None:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.post(path, BODY, content_type="application/json", **headers)
    if response.status_code != 201:
        raise RuntimeError(f"{path}: HTTP {response.status_code}")


def statement_times(client: Client, path: str, n: int, fresh_keys: bool) -> list[dict[str, Any]]:
    """Median seconds of each statement a request to ``path`` executes."""
    from django.db import connection

    times: dict[str, list[float]] = defaultdict(list)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        import time

        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            times[sql].append(time.perf_counter() - start)

    with connection.execute_wrapper(wrapper):
        for _ in range(n):
            _post(client, path, uuid.uuid4().hex if fresh_keys else None)
    return [{"statement": sql[:120], "median_s": statistics.median(values),
             "per_request": len(values) / n} for sql, values in times.items()]  # fmt: skip


def _own_times(client: Client, path: str, n: int, fresh_keys: bool) -> dict[str, float]:
    profiler = cProfile.Profile()
    keys = [uuid.uuid4().hex if fresh_keys else None for _ in range(n)]
    profiler.enable()
    for key in keys:
        _post(client, path, key)
    profiler.disable()
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    for (file, line, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        own[_where(file, line, name)] = own.get(_where(file, line, name), 0.0) + tottime / n
    return own


def _where(file: str, line: int, name: str) -> str:
    path = Path(file)
    for root, label in ((PROJECT, ""), (Path(statistics.__file__).parent, "stdlib/")):
        try:
            return f"{label}{path.relative_to(root)}:{line}({name})"
        except ValueError:
            continue
    parts = path.parts
    if "site-packages" in parts:
        return f"{'/'.join(parts[parts.index('site-packages') + 1 :])}:{line}({name})"
    return f"{file}:{line}({name})"


def added_own_time(client: Client, bare: str, idem: str, n: int) -> dict[str, Any]:
    """Functions by own time added per request (package minus bare), largest first."""
    _own_times(client, idem, 20, True)  # warm
    bare_own = _own_times(client, bare, n, False)
    package_own = _own_times(client, idem, n, True)
    added = {
        f: package_own.get(f, 0.0) - bare_own.get(f, 0.0)
        for f in package_own.keys() | bare_own.keys()
    }
    top = sorted(added.items(), key=lambda item: item[1], reverse=True)[:TOP]
    package_files = {f: t for f, t in added.items() if f.startswith("idempotency/")}
    return {
        "profiled_bare_s": sum(bare_own.values()),
        "profiled_package_s": sum(package_own.values()),
        "package_modules_own_s": sum(package_files.values()),
        "top": [{"function": f, "added_own_s": t} for f, t in top],
    }


def profile(n: int) -> dict[str, Any]:
    from benchmarks.scenarios import FLAVOURS

    client = Client(HTTP_AUTHORIZATION=AUTHORIZATION)
    details: dict[str, Any] = {}
    for flavour in ("django", "drf-token"):
        bare, idem = FLAVOURS[flavour]
        for _ in range(20):
            _post(client, bare, None)
            _post(client, idem, uuid.uuid4().hex)
        details[flavour] = {
            "statements": {"bare": statement_times(client, bare, n, False),
                           "package": statement_times(client, idem, n, True)},
            "functions": added_own_time(client, bare, idem, n),
            "requests": n,
        }  # fmt: skip
    return {"rows": [], "details": details}
