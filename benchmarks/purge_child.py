"""Run ``purge_idempotency_keys`` as an operator would, timestamping its output.

``python -m benchmarks.purge_child OUT.json [ARGS...]``: the parent measures this
process's peak RSS; this records when each line of the command's output was
written (at verbosity 2, one line per batch, printed after the batch's
transaction committed) and writes them to OUT.json.
"""

from __future__ import annotations

import json
import os
import sys
import time


class Stamped:
    def __init__(self) -> None:
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.perf_counter(), text))
        return len(text)

    def flush(self) -> None:
        pass


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command

    out, args = sys.argv[1], sys.argv[2:]
    stream = Stamped()
    start = time.perf_counter()
    call_command("purge_idempotency_keys", *args, verbosity=2, stdout=stream)
    end = time.perf_counter()
    with open(out, "w") as f:
        json.dump({"start": start, "end": end, "writes": stream.writes}, f)


if __name__ == "__main__":
    main()
