"""Worker processes for the multi-worker tests: uvicorn serving tests.asgi, started and stopped.

One place for what test_multiworker, test_broker_outage and test_worker_faults
each need: a worker on a free port, ready once it answers, and stopped
politely, then for sure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from typing import IO, Any

from tests.conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
