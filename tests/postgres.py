"""A PostgreSQL server for the tests: where it is, a journal table of each test's own, and a
proxy between a journal and the server that can cut the connections or swallow a reply.

The server is FASTLEDGER_POSTGRES_URL (default postgresql://postgres@127.0.0.1:55432/postgres).
Without one the tests skip, saying how to start one; with FASTLEDGER_REQUIRE_POSTGRES=1, as CI
sets it, they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:55432/postgres"
HOW_TO_START = (
    "start one, for example as the postgres user: "
    "initdb -D /tmp/fastledger-pg && "
    "pg_ctl -D /tmp/fastledger-pg -o '-p 55432 -k /tmp -c listen_addresses=127.0.0.1' start "
    "(the binaries are under /usr/lib/postgresql/*/bin), or point FASTLEDGER_POSTGRES_URL at one"
)


def server_url() -> str:
    return os.environ.get("FASTLEDGER_POSTGRES_URL", DEFAULT_URL)


def require_postgres() -> Any:
    """The psycopg module, once a server answers; skips (or fails, where required) if not."""

    def missing(why: str) -> None:
        if os.environ.get("FASTLEDGER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required, but {why}")
        pytest.skip(f"{why}: {HOW_TO_START}")

    try:
        import psycopg
    except ImportError:
        missing('psycopg is not installed (pip install "fastledger[postgres]")')
    try:
        psycopg.connect(server_url(), connect_timeout=3).close()
    except psycopg.OperationalError as error:
        missing(f"no PostgreSQL server answers at {server_url()} ({error})".strip())
    return psycopg


def with_query(url: str, **parameters: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, *(f"{k}={v}" for k, v in parameters.items())]))
    return urlunsplit(parts._replace(query=query))


@contextmanager
def journal_url() -> Iterator[str]:
    """The URL of a journal in tables of its own, dropped afterwards. Its connections carry
    the table's name as their application_name, so that a test can find and end them."""
    psycopg = require_postgres()
    table = f"test_{secrets.token_hex(6)}"
    try:
        yield with_query(server_url(), table=table, application_name=table)
    finally:
        with psycopg.connect(server_url(), autocommit=True) as connection:
            terminate(connection, table)
            connection.execute(f"DROP TABLE IF EXISTS {table}_batches, {table}_head")


def terminate(connection: Any, application_name: str, *, wait_ms: int = 0) -> int:
    """Ends every backend of `application_name`, as a server restart would; how many. With
    `wait_ms`, waits that long at most for each to have exited."""
    rows = connection.execute(
        "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (wait_ms, application_name),
    ).fetchall()
    return len(rows)


class Proxy:
    """A TCP proxy on loopback between clients and the server, for the failures that ending a
    backend cannot give: a server that does not answer, and a reply that never arrives."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = urlunsplit(
            parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}")
        )
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.refusing = False
        self._swallow_commit = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def sever(self) -> None:
        """Cuts every connection through the proxy, both ways."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                _hang_up(end)

    def swallow_next_commit(self) -> None:
        """Passes the next append to the server (its statement inserts the batches and
        commits as it ends), lets it commit, and cuts the connection before its reply reaches
        the client."""
        self._swallow_commit.set()

    def close(self) -> None:
        self._listener.close()
        self.sever()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            server = socket.create_connection(self._target)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        swallowing = False
        try:
            while data := source.recv(1 << 16):
                if upstream and self._swallow_commit.is_set() and b"INSERT INTO" in data:
                    self._swallow_commit.clear()
                    swallowing = True
                    # Nothing more reaches the client: its pump stops at the closed socket.
                    source.shutdown(socket.SHUT_WR)
                sink.sendall(data)
                if swallowing:
                    time.sleep(0.2)
                    break
        except OSError:
            pass
        for end in (source, sink):
            _hang_up(end)


def _hang_up(end: socket.socket) -> None:
    # A shutdown wakes the pump blocked reading it, which a close alone does not.
    with contextlib.suppress(OSError):
        end.shutdown(socket.SHUT_RDWR)
    end.close()


def table_of(url: str) -> str:
    """The journal table that a URL of `journal_url` names."""
    return dict(parse_qsl(urlsplit(url).query))["table"]
