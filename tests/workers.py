"""Worker processes for the multi-worker tests: their database, and uvicorn serving tests.asgi.

One place for what test_multiworker, test_workers_operations, test_nginx,
test_broker_outage and test_worker_faults each need: a fresh PostgreSQL
database on DATABASE_URL's server, migrated, and dropped afterwards even when
the test failed; a worker on a free port, ready once it answers, and stopped
politely, then for sure. (test_hosts makes its database through its hosts'
PostgreSQL forwarder: tests/netns.py.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from tests.conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pg_connect(dbname: str) -> Any:
    """An autocommit psycopg connection to ``dbname`` on DATABASE_URL's server."""
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    return psycopg.connect(
        host=url.hostname,
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or None,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def rows(dbname: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows ``sql`` (with ``%s`` parameters) reads from database ``dbname``."""
    with pg_connect(dbname) as connection:
        return connection.execute(sql, params).fetchall()


@contextlib.contextmanager
def fresh_database(
    prefix: str, settings: str = "tests.settings_multi", **extra_env: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """A new database ``<prefix>_<8 hex>``, migrated; yields its name and its workers' env.

    The env runs ``settings`` on that database (``RTCSTREAM_TEST_DB``), with channel
    layer and cache keys of its own (``RTCSTREAM_TEST_PREFIX``), plus ``extra_env``;
    migrations run with it too. The database is dropped on the way out, sessions and
    all (``WITH (FORCE)``: a killed worker may leave connections behind).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_db = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/") or "postgres"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "RTCSTREAM_TEST_DB": name,
        "RTCSTREAM_TEST_PREFIX": name,
        "PYTHONPATH": ROOT,
        **extra_env,
    }
    with pg_connect(admin_db) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v0"],
            env=env,
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        yield name, env
    finally:
        with pg_connect(admin_db) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(
    env: dict[str, str], worker: str, log: IO[Any] | None = None, timeout: float = 30.0
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start worker ``worker`` (its RTCSTREAM_WORKER_NAME) and wait until it answers.

    Returns its base URL and process; output goes to ``log`` if given.
    Raises RuntimeError if it has not answered within ``timeout`` or exited.
    """
    port = free_port()
    output = {"stdout": log, "stderr": subprocess.STDOUT} if log is not None else {}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "on",
            "--log-level",
            "warning",
        ],
        env={**env, "RTCSTREAM_WORKER_NAME": worker},
        cwd=ROOT,
        **output,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/rtc/streams/", timeout=2)
            return url, process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"worker {worker} at {url} did not start") from None
            time.sleep(0.1)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
