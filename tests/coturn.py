"""A real coturn (Debian's ``turnserver``) on 127.0.0.1, started and stopped by a test.

It runs with ``use-auth-secret`` (coturn's REST scheme, what
``django_rtcstream.turn`` mints for), relays on loopback only, and writes its log
to stdout, which a thread reads: the server is ready when it says its UDP
listener is open (an event, not a sleep), and tests read its ``usage:`` lines to
see how much traffic each username relayed.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

REALM = "rtcstream.test"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no port free for both UDP and TCP")


@dataclass
class Coturn:
    """A running turnserver: where it listens, its secret, and its log so far."""

    port: int
    secret: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first log line matching ``pattern``, waiting up to ``timeout`` seconds."""
        regex = re.compile(pattern)
        seen = 0
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.process.poll() is not None and seen == len(self.lines):
                    raise RuntimeError(
                        f"turnserver exited ({self.process.returncode}):\n{self.log()}"
                    )
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no {pattern!r} from turnserver in {timeout} s")

    def usage(self, username: str, timeout: float) -> list[tuple[int, int, int, int]]:
        """(bytes received, bytes sent, packets received, packets sent) of each allocation
        made with ``username`` (received from the client, sent to it).

        coturn logs an allocation's ``usage:`` when it ends; this waits until every
        allocation of ``username`` it has logged as ``new`` has reported one.
        """
        new = re.compile(rf"session (\d+): new, .*username=<{re.escape(username)}>")
        used = re.compile(
            rf"session (\d+): usage: .*username=<{re.escape(username)}>, "
            r"rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)"
        )
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                started = {m.group(1) for line in self.lines if (m := new.search(line))}
                ended = {
                    m.group(1): (
                        int(m.group(3)),
                        int(m.group(5)),
                        int(m.group(2)),
                        int(m.group(4)),
                    )
                    for line in self.lines
                    if (m := used.search(line))
                }
                if started and started <= set(ended):
                    return [ended[s] for s in sorted(started)]
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(
                        f"coturn reported no usage for every allocation of {username!r} "
                        f"in {timeout} s (allocations {sorted(started)}, reported {sorted(ended)})"
                    )


def require_turnserver() -> str:
    """The turnserver binary; skips the test without it (fails under CI=true)."""
    path = shutil.which("turnserver")
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must install coturn (apt-get install coturn) for the TURN tests")
        pytest.skip("turnserver (Debian package coturn) is not installed")
    return path


@contextlib.contextmanager
def coturn(secret: str, start_timeout: float = 20.0) -> Iterator[Coturn]:
    """Run turnserver for the block; it is stopped (SIGTERM, then SIGKILL) however the block ends."""
    binary = require_turnserver()
    port = _free_port()
    low = random.randrange(49152, 64000)
    with tempfile.TemporaryDirectory(prefix="rtcstream-coturn-") as tmp:
        process = subprocess.Popen(
            [
                binary,
                "-n",  # no configuration file
                # One relay thread: with one per core, each binds its UDP socket in turn, and a
                # client's first packets can reach one thread and its next another (438).
                "--relay-threads=1",
                "--verbose",  # says when its listeners are open, and each session's usage
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={port}",
                f"--min-port={low}",
                f"--max-port={low + 200}",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                f"--realm={REALM}",
                "--allow-loopback-peers",  # both peers' relays are on 127.0.0.1
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-rfc5780",
                "--no-tcp-relay",
                f"--userdb={tmp}/turndb",
                f"--pidfile={tmp}/turnserver.pid",
                "--log-file=stdout",
                "--simple-log",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp,
        )
        server = Coturn(port=port, secret=secret, process=process)

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                with server.changed:
                    server.lines.append(line.rstrip("\n"))
                    server.changed.notify_all()
            with server.changed:
                server.changed.notify_all()

        reader = threading.Thread(target=read, name="coturn-log", daemon=True)
        reader.start()
        try:
            server.wait_for_line(
                rf"UDP listener opened on\s*:\s*127\.0\.0\.1:{port}(?!\d)", start_timeout
            )
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            reader.join(5)
