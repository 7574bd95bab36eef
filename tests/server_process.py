"""A real server process for the SIGTERM tests (tests/test_shutdown.py, tests/test_drain.py).

Each runs ``tests.asgi`` under uvicorn or daphne on a free port, with a SQLite
file of its own (migrated first) and a file where the test streams note their
events (``RTCSTREAM_TEST_EVENTS``, see tests/streams.py), so that what a
signal did can be read back after the process is gone: the session records
and the handlers whose ``shutdown()`` ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def server_command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            "tests.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
        ]
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "tests.asgi:application"]


async def wait_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            await asyncio.to_thread(urllib.request.urlopen, url, timeout=2)
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"the server did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class ServerProcess:
    """A running server: its ``base`` URL (``.../rtc/``), process, files and clients."""

    base: str
    process: subprocess.Popen
    db: Path
    events: Path
    log: Path
    #: Clients of the test, closed once the server is gone (the test may fail first).
    clients: list[Any] = field(default_factory=list)

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def records(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows ``sql`` reads from the server's SQLite file."""
        with contextlib.closing(sqlite3.connect(self.db)) as connection:
            return connection.execute(sql).fetchall()

    def shutdowns(self) -> list[str]:
        """The sessions whose handler's ``shutdown()`` ran, sorted."""
        return sorted(
            line.split()[0]
            for line in self.events.read_text().splitlines()
            if line.split()[1] == "shutdown"
        )


@contextlib.asynccontextmanager
async def serving(server: str, tmp_path: Path, **env: str) -> AsyncIterator[ServerProcess]:
    """``server`` ("uvicorn" or "daphne") serving tests.asgi with ``env`` added, once it
    answers; killed on the way out if it is still running, then its clients closed."""
    db, events, log = tmp_path / "db.sqlite3", tmp_path / "events.txt", tmp_path / "server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "RTCSTREAM_TEST_SQLITE": str(db),
        "RTCSTREAM_TEST_EVENTS": str(events),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}/rtc/"
    with open(log, "w") as out:
        process = subprocess.Popen(
            server_command(server, port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = ServerProcess(base, process, db, events, log)
    try:
        await wait_serving(f"{base}streams/", process, log)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        for client in running.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
