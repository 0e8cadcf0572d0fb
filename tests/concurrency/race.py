"""Helpers for the concurrency tests: start calls together, classify answers."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection

T = TypeVar("T")

# Rounds of each race; CI keeps the default, a stress run raises it.
ROUNDS = int(os.environ.get("IDEMPOTENCY_STRESS_ROUNDS", "5"))
# Concurrent requests per round.
REQUESTS = 16

PROBLEM_PREFIX = "tag:django-idempotency,2026:"

# One line per race, printed at the end of the run (conftest.py), so the
# numbers behind a green run are visible.
TALLIES: list[str] = []


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Answer:
        return cls(status, {name.lower(): value for name, value in headers}, body)

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"

    @property
    def problem_slug(self) -> str | None:
        if self.headers.get("content-type") != "application/problem+json":
            return None
        problem = json.loads(self.body)
        assert problem["status"] == self.status
        return str(problem["type"]).removeprefix(PROBLEM_PREFIX)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def client_answer(response: Any) -> Answer:
    """An ``Answer`` from a django.test.Client response."""
    return Answer.of(response.status_code, response.headers.items(), response.content)


def closing_connection(call: Callable[[], T]) -> Callable[[], T]:
    """``call``, closing this thread's database connection when it is done."""

    def run() -> T:
        try:
            return call()
        finally:
            connection.close()

    return run


def run_together(calls: Sequence[Callable[[], T]], timeout: float = 60) -> list[T]:
    """Run each call in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            barrier.wait(timeout)
            return call()

        return closing_connection(run)

    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = [pool.submit(released(call)) for call in calls]
        return [future.result(timeout=timeout) for future in futures]
    finally:
        barrier.abort()  # a failed start must not leave the others waiting
        pool.shutdown(wait=True, cancel_futures=True)


def tally_race(answers: Sequence[Answer]) -> tuple[Answer, Counter[str]]:
    """Exactly one original; every other answer a replay of it or a 409.

    Returns the original and how many answers were of each kind.
    """
    originals = [a for a in answers if a.status == 201 and not a.replayed]
    assert len(originals) == 1, [(a.status, a.headers, a.body) for a in answers]
    original = originals[0]
    tally: Counter[str] = Counter()
    for answer in answers:
        if answer is original:
            tally["201"] += 1
        elif answer.replayed:
            assert answer.status == original.status
            assert answer.body == original.body
            for name in ("content-type", "location"):
                assert answer.headers.get(name) == original.headers.get(name), name
            tally["replay"] += 1
        else:
            assert answer.status == 409, (answer.status, answer.body)
            assert answer.problem_slug == "request-in-progress"
            assert int(answer.headers["retry-after"]) > 0
            tally["409"] += 1
    return original, tally


def check_race(answers: Sequence[Answer], label: str) -> Answer:
    """``tally_race``, recording the tally for the run's summary."""
    original, tally = tally_race(answers)
    TALLIES.append(
        f"{label}: {len(answers)} requests, 201={tally['201']} "
        f"replay={tally['replay']} 409={tally['409']}"
    )
    return original
