"""The service example under two uvicorn workers: transfers posted through both at once, and
balances that read the same through either worker. uvicorn and Starlette come with the test
extra."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

SERVICE = Path(__file__).resolve().parents[1] / "examples" / "service"
WORKERS = 2
TRANSFERS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def call(port: int, method: str, path: str, body: dict[str, int] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Connection", "close")  # a new connection each time: any worker
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def test_two_workers_share_one_ledger(tmp_path: Path) -> None:
    if not SERVICE.is_dir():
        pytest.skip("the examples folder is not part of this installation")
    port = free_port()
    env = {**os.environ, "FASTLEDGER_PATH": str(tmp_path / "ledger")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    command = (sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(SERVICE))
    options = ("--workers", str(WORKERS), "--port", str(port), "--log-level", "warning")
    server = subprocess.Popen([*command, *options], env=env)
    try:
        wait_until_serving(port, server)
        assert call(port, "POST", "/accounts", {"id": 1})["status"] == "CREATED"
        assert call(port, "POST", "/accounts", {"id": 2})["status"] == "CREATED"
        moves = [
            {"id": 100 + n, "from": 1 + n % 2, "to": 2 - n % 2, "amount": n + 1}
            for n in range(TRANSFERS)
        ]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda m: call(port, "POST", "/transfers", m), moves))
        assert all(a["status"] == "CREATED" for a in answers), answers
        assert len({a["worker"] for a in answers}) == WORKERS, "both workers posted"
        expected = sum(m["amount"] if m["to"] == 2 else -m["amount"] for m in moves)
        seen = {}
        deadline = time.monotonic() + 30
        while len(seen) < WORKERS and time.monotonic() < deadline:
            account = call(port, "GET", "/accounts/2")
            seen[account["worker"]] = account["balance"]
        assert len(seen) == WORKERS, "both workers answered a read"
        assert set(seen.values()) == {expected}, seen
        retry = call(port, "POST", "/transfers", moves[0])
        assert retry["status"] == "EXISTS"
    finally:
        server.terminate()
        server.wait(30)
    from fastledger._verify import verify

    report = verify(tmp_path / "ledger")
    assert report.ok and report.transfers == TRANSFERS, report.summary()


def wait_until_serving(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")
