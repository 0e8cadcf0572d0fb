"""A real uvicorn server on the test database, for async views under ASGI.

On SQLite every test here is reported as skipped (tests/conftest.py): the
server process cannot reach pytest-django's in-memory test database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, uvicorn_server, wait_until
from tests.testapp.views_async import GATE_DIR


@dataclass
class Gates:
    """The files through which a test holds an async view open in the server."""

    directory: Path

    def entered(self, name: str, server: Server) -> None:
        wait_until((self.directory / f"{name}.entered").exists, 30, f"gate {name} entered", server)

    def open(self, name: str) -> None:
        (self.directory / f"{name}.open").touch()


@dataclass
class AsgiServer:
    server: Server
    gates: Gates

    def log(self) -> str:
        return self.server.log.read_text()


@pytest.fixture(scope="module")
def asgi(django_db_setup: None, tmp_path_factory: Any) -> Iterator[AsgiServer]:
    tmp = tmp_path_factory.mktemp("uvicorn")
    gates = tmp / "gates"
    gates.mkdir()
    with uvicorn_server(tmp, env={GATE_DIR: str(gates)}) as server:
        yield AsgiServer(server, Gates(gates))
