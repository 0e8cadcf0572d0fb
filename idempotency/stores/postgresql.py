"""The database store, refined for PostgreSQL and psycopg 3 (issue "Performance").

A new key costs what exactly-once needs and little more: two round trips of
the package's own, and no WAL flush beyond the one the call's commit pays.

- **One message claims the key, commits the claim and begins the call's
  transaction**: ``BEGIN; SELECT * FROM idempotency_claim_v1(...); COMMIT; BEGIN``.
  The claim is committed before the call runs, so a concurrent duplicate sees
  it at once (contract section 3, Transactions).
- **One message stores the outcome and commits it with the call's writes**:
  ``SELECT idempotency_complete_v1(...); COMMIT``. The function raises when
  another request took the record over, so that COMMIT cannot commit a
  superseded call.
- **The claim commits without waiting for its WAL flush**
  (``synchronous_commit`` off for the claim's own transaction). No flush is
  needed: the call's commit is synchronous and WAL is sequential, so whenever
  the call's writes or its stored response are durable, so is its claim; and
  a crash that loses the claim also ends every transaction of the calls it
  covered, none of which committed (docs/decisions.md).
- **Nothing is planned twice**: the two functions (migration 0004) are
  PL/pgSQL, whose plans are cached per connection with no session state a
  pooler must keep, unlike prepared statements.

psycopg sends BEGIN on a round trip of its own when a transaction starts, so
while the claim is sent, psycopg's autocommit is on and the message carries
the BEGIN; Django's atomic block is open throughout and keeps its own flag,
so nothing Django relies on changes. Inside an enclosing transaction
(ATOMIC_REQUESTS) the claim is part of it and Django's savepoint applies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction

from idempotency.stores.base import Attempt, Claim, ClaimOutcome, StoredResponse
from idempotency.stores.database import DatabaseRecordStore, _Transaction
from idempotency.stores.transactions import RolledBack

CLAIM = "SELECT * FROM idempotency_claim_v1(%s, %s, %s, %s, %s, %s, %s, %s)"
# BEGIN first: a COMMIT in an implicit transaction block costs the server a
# WARNING in its log on every request.
CLAIM_AND_BEGIN = "BEGIN; " + CLAIM + "; COMMIT; BEGIN"
COMPLETE = "SELECT idempotency_complete_v1(%s, %s, %s::smallint, %s::jsonb, %s::bytea, %s)"
COMPLETE_AND_COMMIT = COMPLETE + "; COMMIT"
SUPERSEDED = "idempotency: record superseded"


@dataclass
class _OutermostTransaction(_Transaction):
    """Our own outermost atomic block: its COMMIT travels with the completion."""


class PostgresRecordStore(DatabaseRecordStore):
    def claim(self, attempt: Attempt) -> Claim:
        if attempt.atomic and not attempt.previous_keys and not self.connection.in_atomic_block:
            self._refuse_oversized(attempt)
            claim = self._claim_and_begin(attempt)
            if claim is not None:
                return claim
        return super().claim(attempt)

    def _claim_and_begin(self, attempt: Attempt) -> Claim | None:
        """Claim, COMMIT and BEGIN in one message; ``None`` sends the call
        down the generic path (a record to take over, or one just released)."""
        atomic = transaction.atomic(using=self.alias)
        reachable = self._reachable()
        with reachable:
            atomic.__enter__()
        try:
            with reachable:
                connection = self.connection
                connection.connection.autocommit = True  # the BEGIN is ours to send
                with connection.cursor() as cursor:
                    cursor.execute(CLAIM_AND_BEGIN, self._claim_params(attempt, async_commit=True))
                    cursor.nextset()  # past the BEGIN's result to the claim's
                    rows = list(cursor.fetchall())
        except BaseException as error:
            atomic.__exit__(type(error), error, error.__traceback__)
            raise
        if rows and rows[0][0]:
            return Claim(ClaimOutcome.ACQUIRED, int(rows[0][1]), version=1,
                         transaction=_OutermostTransaction(atomic))  # fmt: skip
        atomic.__exit__(RolledBack, RolledBack(), None)  # the claim's read needs no transaction
        # A takeover is an UPDATE that must commit before the call runs: the
        # generic path makes it in autocommit.
        return self._judge(attempt, rows[0][1:], take_over=False) if rows else None

    def _insert_or_read(
        self, attempt: Attempt, nowait: bool = False
    ) -> tuple[int | None, Sequence[Any] | None]:
        # In autocommit the claim is its own transaction, committed without a
        # flush; inside an enclosing one it commits with it, synchronously.
        async_commit = not self.connection.in_atomic_block
        rows = self._rows(CLAIM, self._claim_params(attempt, async_commit))
        if not rows:
            return None, None  # released between the insert and the read
        if rows[0][0]:
            return int(rows[0][1]), None
        return None, rows[0][1:]

    def _complete_and_end(self, txn: _Transaction, claim: Claim, response: StoredResponse) -> bool:
        if not isinstance(txn, _OutermostTransaction) or txn.atomic is None:
            return super()._complete_and_end(txn, claim, response)
        atomic, txn.atomic = txn.atomic, None
        try:
            with self._reachable():
                self._rows(COMPLETE_AND_COMMIT, self._complete_params(claim, response))
        except DatabaseError as error:
            atomic.__exit__(type(error), error, error.__traceback__)
            if SUPERSEDED in str(error):
                return False
            raise
        except BaseException as error:
            atomic.__exit__(type(error), error, error.__traceback__)
            raise
        # Committed: Django's COMMIT finds nothing left to commit; it runs
        # the on_commit callbacks and restores autocommit.
        atomic.__exit__(None, None, None)
        return True

    def _complete(self, claim: Claim, response: StoredResponse) -> bool:
        try:
            self._rows(COMPLETE, self._complete_params(claim, response))
        except DatabaseError as error:
            if SUPERSEDED in str(error):
                return False
            raise
        return True

    def _claim_params(self, attempt: Attempt, async_commit: bool) -> list[Any]:
        return [*self.sql.claim_params(attempt), async_commit]

    @staticmethod
    def _complete_params(claim: Claim, response: StoredResponse) -> list[Any]:
        return [
            claim.record_id,
            claim.version,
            response.status,
            json.dumps(response.headers),
            response.body,
            response.sensitive,
        ]
