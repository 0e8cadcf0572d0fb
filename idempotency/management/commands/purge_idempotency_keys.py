from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from idempotency.purge import DEFAULT_BATCH_SIZE, purge_expired


class Command(BaseCommand):
    help = "Delete idempotency records past their expiry, in batches."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the expired records; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Records deleted per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, dry_run: bool, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError(
                f"--batch-size must be a whole number of at least 1, got {batch_size}."
            )
        verbosity = int(options["verbosity"])
        if dry_run:
            count = purge_expired(dry_run=True)
            if verbosity >= 1:
                self.stdout.write(f"{count} expired idempotency records would be deleted.")
            return

        def report(total: int) -> None:
            if verbosity >= 2:
                self.stdout.write(f"... {total} deleted")

        total = purge_expired(batch_size=batch_size, progress=report)
        if verbosity >= 1:
            self.stdout.write(f"Deleted {total} expired idempotency records.")
