from __future__ import annotations

from typing import Any

# One line per race in tests/versioning/test_threads.py, printed at the end of
# the run, so that the numbers behind a green run are visible.
TALLIES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("versioning race tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)
