"""Hosts with their own addresses on one machine: network namespaces, veth pairs, a bridge.

Used by tests/test_hosts.py (and bench/hosts.py). ``Hosts`` builds, as root
with iproute2::

    root namespace: bridge rb<tag> 10.A.B.1/24  <- Redis of its own, PostgreSQL forwarder
      veth -> namespace rtchosts-<pid>-<tag>-h1   10.A.B.11  (workers of host 1)
      veth -> namespace rtchosts-<pid>-<tag>-h2   10.A.B.12  (workers of host 2)
      veth -> namespace rtchosts-<pid>-<tag>-c    10.A.B.20  (clients)

Redis and PostgreSQL listen on 127.0.0.1 only, so the bridge address gets a
redis-server of its own and a socat forwarder to PostgreSQL (both Debian
programs, started here). Workers run ``ip netns exec <host> uvicorn`` on their
host's address with ``ICE_HOST_ADDRESSES`` set to it. Client code runs in the
client namespace on a thread of its own (``NamespaceLoop``: ``setns`` on that
thread; the sockets it and the threads it starts open live there).

Everything made is recorded as it is made and undone by ``close()``, which
the context manager and the tests' fixtures always call, also when a test
fails; namespaces left by a killed test process (its pid is in their names)
are removed by the next ``Hosts``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Coroutine
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "rtchosts-"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def why_unusable() -> str | None:
    """None if namespaces can be made here; else what is missing."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    for program in ("redis-server", "socat"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sweep_stale() -> None:
    """Remove namespaces (and their bridges) of earlier test processes that are gone."""
    for name in namespaces():
        match = re.match(rf"{PREFIX}(\d+)-([0-9a-f]+)-", name)
        if not match or match.group(1) == str(os.getpid()):
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its process still runs
        except ProcessLookupError:
            pass
        kill_inside(name)
        ip("netns", "del", name, check=False)
        ip("link", "del", f"rb{match.group(2)}", check=False)


def kill_inside(namespace: str) -> None:
    """SIGKILL every process that still runs in ``namespace`` (``ip netns pids``)."""
    for pid in ip("netns", "pids", namespace, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Hosts:
    """The namespaces, the bridge, and every process started on them; see the module doc."""

    def __init__(self, hosts: int = 2) -> None:
        self.tag = secrets.token_hex(2)
        self.base_name = f"{PREFIX}{os.getpid()}-{self.tag}-"
        self.bridge = f"rb{self.tag}"
        used = ip("-4", "addr", check=False).stdout
        while True:
            net = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
            if f"inet {net}." not in used:
                break
        self.net = net
        self.gateway = f"{net}.1"
        self.addresses = {f"h{i + 1}": f"{net}.{11 + i}" for i in range(hosts)}
        self.addresses["c"] = f"{net}.20"
        self.made_namespaces: list[str] = []
        self.made_links: list[str] = []
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs = tempfile.mkdtemp(prefix="rtcstream-hosts-logs-")
        self.files: list[IO[Any]] = []
        self.workers: dict[str, list[dict[str, Any]]] = {}  # host -> its workers
        self.database: str | None = None
        self.database_url: str | None = None
        self.admin_url: str | None = None
        self.redis_url: str | None = None
        self.loops: list[NamespaceLoop] = []
        self.closed = False

    # -- names --------------------------------------------------------------------------

    def ns(self, host: str) -> str:
        return self.base_name + host

    def veth(self, host: str) -> str:
        return f"v{self.tag}{host}"  # the root side; 15 characters at most

    # -- building -------------------------------------------------------------------------

    def build(self) -> Hosts:
        sweep_stale()
        ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host, address in self.addresses.items():
            name, root_side, inner = self.ns(host), self.veth(host), f"e{self.tag}{host}"
            ip("netns", "add", name)
            self.made_namespaces.append(name)
            ip("link", "add", root_side, "type", "veth", "peer", "name", inner)
            self.made_links.append(root_side)
            ip("link", "set", inner, "netns", name)
            ip("-n", name, "link", "set", inner, "name", "eth0")
            ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip("-n", name, "link", "set", "lo", "up")
            ip("link", "set", root_side, "master", self.bridge)
            ip("link", "set", root_side, "up")
        return self

    def spawn(
        self,
        name: str,
        argv: list[str],
        namespace: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A process (in ``namespace`` if given), output to a log file, its own process group."""
        # Kept open for the process's life; close() closes every file in self.files.
        log = open(os.path.join(self.logs, f"{name}.log"), "ab")  # noqa: SIM115
        self.files.append(log)
        if namespace is not None:
            argv = ["ip", "netns", "exec", namespace, *argv]
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env or dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append((name, process))
        return process

    def start_redis(self) -> str:
        port = free_port_on(self.gateway)
        self.spawn(
            "redis",
            [
                *("redis-server", "--bind", self.gateway, "--port", str(port), "--save", ""),
                *("--appendonly", "no", "--protected-mode", "no"),
            ],
        )
        wait_tcp(self.gateway, port, 20, "redis-server on the bridge")
        self.redis_url = f"redis://{self.gateway}:{port}/0"
        return self.redis_url

    def forward_postgres(self, database_url: str) -> str:
        """socat from the bridge address to the machine's PostgreSQL; a fresh database."""
        import psycopg

        url = urlsplit(database_url)
        port = free_port_on(self.gateway)
        target = f"{url.hostname or '127.0.0.1'}:{url.port or 5432}"
        self.spawn(
            "pg-forwarder",
            ["socat", f"TCP-LISTEN:{port},bind={self.gateway},reuseaddr,fork", f"TCP:{target}"],
        )
        wait_tcp(self.gateway, port, 20, "the PostgreSQL forwarder")
        self.database = f"rtcstream_hosts_{self.tag}_{os.getpid()}"
        self.admin_url = database_url
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        netloc = url.netloc.rsplit("@", 1)
        host = f"{self.gateway}:{port}"
        netloc_new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        self.database_url = url._replace(netloc=netloc_new, path=f"/{self.database}").geturl()
        return self.database_url

    def worker_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        assert self.redis_url and self.database_url
        hosts = ",".join(self.addresses.values())
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings_hosts",
            "PYTHONPATH": ROOT,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "RTCSTREAM_TEST_DB": self.database or "",
            "RTCSTREAM_TEST_PREFIX": f"rtcstream-hosts-{self.tag}",
            "RTCSTREAM_TEST_ALLOWED_HOSTS": hosts,
            **(extra or {}),
        }

    def migrate(self, env: dict[str, str], superuser: tuple[str, str] | None = None) -> None:
        """Migrate (and create a superuser) from the root namespace, through the forwarder."""
        run = {"env": env, "cwd": ROOT, "check": True, "timeout": 180, "capture_output": True}
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], **run)  # type: ignore[call-overload]
        if superuser:
            name, password = superuser
            subprocess.run(  # type: ignore[call-overload]
                [
                    *(sys.executable, "-m", "django", "createsuperuser", "--noinput"),
                    *("--username", name, "--email", f"{name}@example.com"),
                ],
                **{**run, "env": {**env, "DJANGO_SUPERUSER_PASSWORD": password}},
            )

    def start_worker(
        self, host: str, env: dict[str, str], cores: str | None = None, timeout: float = 60
    ) -> str:
        """A uvicorn worker in ``host``'s namespace on its address; its base URL once it answers."""
        address = self.addresses[host]
        port = 8000 + len(self.workers.get(host, []))
        index = len(self.workers.get(host, []))
        name = f"{host}-w{index}"
        argv = [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--host", address]
        argv += ["--port", str(port), "--lifespan", "on", "--log-level", "warning"]
        if cores:
            argv = ["taskset", "-c", cores, *argv]
        wenv = {**env, "RTCSTREAM_WORKER_NAME": name, "RTCSTREAM_TEST_ICE_HOSTS": address}
        process = self.spawn(name, argv, self.ns(host), wenv)
        url = f"http://{address}:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/rtc/streams/", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker {name} did not start:\n{self.log(name)[-3000:]}"
                    ) from None
                time.sleep(0.1)
        self.workers.setdefault(host, []).append(
            {"name": name, "process": process, "base": f"{url}/rtc/"}
        )
        return f"{url}/rtc/"

    def kill_workers(self, host: str) -> None:
        for worker in self.workers.get(host, []):
            process = worker["process"]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def cut(self, host: str) -> None:
        """The host's link down: its workers reach nothing, nothing reaches them."""
        ip("link", "set", self.veth(host), "down")

    def restore(self, host: str) -> None:
        ip("link", "set", self.veth(host), "up")

    def log(self, name: str) -> str:
        try:
            with open(os.path.join(self.logs, f"{name}.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def client_loop(self) -> NamespaceLoop:
        loop = NamespaceLoop(self.ns("c"))
        self.loops.append(loop)
        return loop

    # -- undoing --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, remove every namespace and link, drop the database."""
        if self.closed:
            return
        self.closed = True
        for loop in self.loops:
            loop.close()
        for _, process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
            try:  # children that left the group (none expected): the group once more
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in self.files:
            f.close()
        for name in reversed(self.made_namespaces):
            kill_inside(name)  # anything that escaped its process group
            ip("netns", "del", name, check=False)
        for link in reversed(self.made_links):
            ip("link", "del", link, check=False)  # veths went with their namespaces
        if self.database and self.admin_url:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.logs, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What of this Hosts still exists (namespaces, links, live processes)."""
        out = [n for n in namespaces() if n.startswith(self.base_name)]
        links = ip("-o", "link", check=False).stdout
        out += [link for link in self.made_links if re.search(rf": {link}[@:]", links)]
        out += [f"process {name} ({p.pid})" for name, p in self.processes if p.poll() is None]
        return out

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_tcp(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} ({host}:{port}) not listening after {timeout:g} s"
                ) from None
            time.sleep(0.05)


class NamespaceLoop:
    """An event loop on a thread that has entered a network namespace.

    ``await loop.run(coro)`` runs ``coro`` there: its sockets (and those of the
    threads it starts, which inherit the namespace) belong to that namespace.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        ready = threading.Event()

        def main() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
            except BaseException as exc:
                self.error = exc
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

        self.thread = threading.Thread(target=main, name=f"netns {namespace}", daemon=True)
        self.thread.start()
        ready.wait(10)
        if self.error is not None:
            raise RuntimeError(f"cannot enter {namespace}: {self.error}")

    async def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        assert self.loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def close(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
