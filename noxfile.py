"""Test sessions. `nox -s tests` is the README's whole-suite command.

- tests:      the suite on SQLite, PostgreSQL and MariaDB, with this Python.
- oldest:     Python 3.10 + Django 5.2 + DRF 3.16: the suite on SQLite, the
              database-dialect tests on PostgreSQL and MariaDB.
- newest:     Python 3.13 + the newest Django and DRF: the same.
- lint:       ruff and mypy --strict.
- docs:       the MkDocs site, warnings as errors.
- benchmarks: the benchmark suite's quick smoke run (reported, never gated).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

DATABASES = ("sqlite", "postgresql", "mariadb")
PYTEST = ("pytest", "-p", "no:cacheprovider")
# What a Django or DRF release can change per database backend: the store's
# SQL, transactions, query budgets, purge and the record admin. The pairs run
# these on the server databases and the whole suite on SQLite, which keeps
# .ci/run within its time (`tests` runs everything on every database).
DIALECT_TESTS = (
    "tests/test_store.py", "tests/test_databases.py", "tests/test_queries.py",
    "tests/test_transactions.py", "tests/test_purge.py", "tests/test_admin.py",
    "tests/stores/test_conformance.py", "tests/test_functions.py", "tests/versioning",
)  # fmt: skip


def run_pair(session: nox.Session, suffix: str) -> None:
    for database in DATABASES:
        session.log(f"--- {session.name} supported pair on {database} ---")
        # The Redis store does not depend on the database backend.
        paths = (
            () if database == "sqlite" or session.posargs else (*DIALECT_TESTS, "-k", "not redis")
        )
        session.run(*PYTEST, *paths, *session.posargs, env={"IDEMPOTENCY_TEST_DB": database,
                                                            "IDEMPOTENCY_TEST_DB_SUFFIX": suffix})  # fmt: skip


def ensure_mariadb_headers(session: nox.Session) -> None:
    """mysqlclient compiles against the MariaDB client headers."""
    probe = (
        subprocess.run(["pkg-config", "--exists", "libmariadb"], capture_output=True, check=False)
        if shutil.which("pkg-config")
        else None
    )
    if probe is not None and probe.returncode == 0:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run(
            "apt-get", "install", "-y", "-qq", "libmariadb-dev", "pkg-config",
            external=True, env={"DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip
        return
    session.error(
        "mysqlclient needs the MariaDB client headers: apt-get install libmariadb-dev pkg-config"
    )


@nox.session
def tests(session: nox.Session) -> None:
    ensure_mariadb_headers(session)
    session.install("-e", ".[test,browser]")
    for database in DATABASES:
        session.log(f"--- test suite on {database} ---")
        session.run(*PYTEST, *session.posargs, env={"IDEMPOTENCY_TEST_DB": database})


@nox.session(python="3.10")
def oldest(session: nox.Session) -> None:
    ensure_mariadb_headers(session)
    session.install("-e", ".[test,browser]", "Django==5.2.*", "djangorestframework==3.16.*")
    run_pair(session, "_oldest")


@nox.session(python="3.13")
def newest(session: nox.Session) -> None:
    ensure_mariadb_headers(session)
    session.install("-e", ".[test,browser]", "--upgrade", "Django", "djangorestframework")
    run_pair(session, "_newest")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.create_tmp()}/site")


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install("-e", ".[benchmarks]")
    session.run("python", "-m", "benchmarks", "--quick", *session.posargs)
