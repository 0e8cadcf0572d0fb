"""``manage.py purge_idempotency_keys``: a thin shell over ``purge_expired``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from idempotency.conf import idempotency_settings
from idempotency.purge import DEFAULT_BATCH_SIZE, MAX_OLDER_THAN, purge_expired

DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
DURATION_HINT = "a duration such as 7d, 12h, 30m, 90s or 1d12h"


class Command(BaseCommand):
    help = (
        "Delete idempotency records past their expiry, and in-progress records whose "
        "lock expired more than TTL ago, in batches of one transaction each."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Let "--older-than -1d" reach handle() as a value, to be refused with
        # a clear message, rather than be taken for an unknown option.
        parser._negative_number_matcher = re.compile(r"^-\d")
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            default=DEFAULT_BATCH_SIZE,
            help=f"Records deleted per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--older-than",
            default=None,
            help=f"Only records that expired longer ago than this: {DURATION_HINT}.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias that holds the records (default IDEMPOTENCY['DATABASE']).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = parse_batch_size(options["batch_size"])
        older_than = (
            None if options["older_than"] is None else parse_duration(options["older_than"])
        )
        using = parse_database(options["database"])
        verbosity = int(options["verbosity"])
        if verbosity >= 2:
            verb = "Counting" if options["dry_run"] else "Purging"
            which = "expired idempotency records"
            if older_than:
                which = f"idempotency records that expired more than {options['older_than']} ago"
            self.stdout.write(f"{verb} {which} in database '{using}', {batch_size} per batch.")
        if options["dry_run"]:
            count = purge_expired(dry_run=True, older_than=older_than, using=using)
            if verbosity >= 1:
                self.stdout.write(f"{_records(count)} would be deleted.")
            return

        batches = [0]

        def report(total: int) -> None:
            if verbosity >= 2:
                self.stdout.write(
                    f"Batch {len(batches)}: {total - batches[-1]} deleted ({total} so far)."
                )
            batches.append(total)

        total = purge_expired(
            batch_size=batch_size, older_than=older_than, using=using, progress=report
        )
        if verbosity >= 1:
            self.stdout.write(f"Deleted {_records(total)}.")


# A batch is one transaction: past this it would hold locks for seconds, and
# past 2**63 no database could even take the LIMIT.
MAX_BATCH_SIZE = 1_000_000


def parse_batch_size(value: object) -> int:
    text = str(value)
    if (
        isinstance(value, bool)
        or not re.fullmatch(r"[0-9]{1,12}", text)
        or not 1 <= int(text) <= MAX_BATCH_SIZE
    ):
        raise CommandError(
            f"Invalid --batch-size {text[:40]!r}: use a whole number of records from 1 to "
            f"{MAX_BATCH_SIZE:,}, such as {DEFAULT_BATCH_SIZE}."
        )
    return int(text)


def parse_duration(value: object) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s`` or a combination in that order (``1d12h``)."""
    text = str(value)
    match = DURATION.fullmatch(text)
    if not text or match is None:
        raise CommandError(f"Invalid --older-than {text!r}: use {DURATION_HINT}.")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        duration = MAX_OLDER_THAN + timedelta(days=1)
    if duration > MAX_OLDER_THAN:
        raise CommandError(
            f"Invalid --older-than {text!r}: use a duration of at most 100 years, such as 30d."
        )
    return duration


def parse_database(value: str | None) -> str:
    if value is None:
        return idempotency_settings.DATABASE
    if value not in connections:
        aliases = ", ".join(connections)
        raise CommandError(
            f"Invalid --database {value!r}: use an alias from settings.DATABASES ({aliases})."
        )
    return value


def _records(count: int) -> str:
    return f"{count} expired idempotency record{'' if count == 1 else 's'}"
