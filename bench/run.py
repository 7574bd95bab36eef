"""Benchmark: django-rtcstream against a bare aiortc floor and FastRTC, measured as a client would.

    .venv/bin/python bench/run.py --quick     # a few minutes
    .venv/bin/python bench/run.py --full      # repeats, longer windows, finer capacity search
    make bench                                # installs what it needs, then --quick

Servers (all started at the beginning, all serving the same handlers from
bench/handlers.py; only the one being measured has sessions):

- ``floor``: bench/floor_server.py, bare aiortc + aiohttp, stock everything;
- ``ours-1``: bench/djproject under one daphne worker (SQLite, in-memory layer);
- ``ours-N``: the same project as one daphne worker per core, channels-redis and
  a Redis cache, PostgreSQL if reachable; sessions are spread round-robin over
  the workers' ports, as a load balancer in front would do;
- ``fastrtc``: bench/fastrtc_server.py in bench/.venv-fastrtc, when available.

Scenarios run interleaved (each scenario on every server before the next;
server order rotates between repeats) and figures are medians over repeats.
Output: a table on stdout and JSON in bench/results/ (``latest-<mode>.json``).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
FASTRTC_PYTHON = BENCH / ".venv-fastrtc" / "bin" / "python"
DAPHNE = str(Path(PYTHON).with_name("daphne"))
UVICORN = str(Path(PYTHON).with_name("uvicorn"))
CORES = os.cpu_count() or 1

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "repeats": 1,
        "window": 3.0,
        "warmup": 0.5,
        "grace": 0.6,
        "many": 4,
        "ladder": [2, 4, 5, 6, 7, 8, 10, 12, 16],
        "capacity_window": 3.0,
        "start_cycles": 0,
        "import_repeats": 3,
        "quiet_limit": 4.0,
        "retries": 1,
        "max_other": 0.5,
    },
    "full": {
        "repeats": 3,
        "window": 10.0,
        "warmup": 1.0,
        "grace": 1.0,
        "many": 4,
        "ladder": [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24],
        "capacity_window": 6.0,
        "start_cycles": 3,
        "import_repeats": 7,
        "quiet_limit": 30.0,
        "retries": 2,
        "max_other": 0.3,
    },
}

# (key, stream, media kind, sessions ("1" or "many"), client)
SCENARIOS = [
    ("video-1", "flip", "video", "1", "stock"),
    ("audio-1", "echo", "audio", "1", "stock"),
    ("video-many", "flip", "video", "many", "stock"),
    ("audio-many", "echo", "audio", "many", "stock"),
    ("video-1-pkgclient", "flip", "video", "1", "package"),
    ("audio-1-pkgclient", "echo", "audio", "1", "package"),
    ("slow-video-1", "slowflip", "video", "1", "stock"),
    ("audio-1-prefetch4", "echo", "audio", "1", "stock"),
    ("audio-jitter", "echo", "audio", "1", "stock"),
    ("audio-jitter-inorder", "echo", "audio", "1", "stock"),
    ("audio-jitter-prefetch4", "echo", "audio", "1", "stock"),
    ("audio-jitter-pkgbuffer", "echo", "audio", "1", "stock"),
    # The many-session scenarios again with the replay client (bench/replay.py): its CPU per
    # session-second beside the stock client's, same run; one session decodes, the rest count.
    ("video-many-replay", "flip", "video", "many", "replay"),
    ("audio-many-replay", "echo", "audio", "many", "replay"),
]
PACKAGE_CLIENT_SERVERS = ("floor", "ours-1")  # StreamClient reads <base>/<stream>/config

# The injected bad link (tests/relay.py, in the client process, both directions): a random
# 0-40 ms delay per packet, 1 % of packets dropped; "reorder": False keeps packets in order.
JITTER = {"max_delay": 0.040, "loss": 0.01, "reorder": True}
JITTER_WINDOW = 10.0  # seconds at least: 1 % loss is a handful of packets a window
# Per-scenario options: "link" (the relay), "client_buffer" (the stock client gets the package
# client's audio buffer), "servers" (only these), "stream_on" (another stream on some server).
SCENARIO_OPTIONS: dict[str, dict[str, Any]] = {
    "video-many-replay": {"sample": 1},
    "audio-many-replay": {"sample": 1},
    "audio-1-prefetch4": {"servers": ("floor", "ours-1"), "stream_on": {"ours-1": "echo-p4"}},
    "audio-jitter": {"link": JITTER, "min_window": JITTER_WINDOW},
    "audio-jitter-inorder": {"link": {**JITTER, "reorder": False}, "min_window": JITTER_WINDOW},
    "audio-jitter-prefetch4": {
        "link": JITTER,
        "servers": ("floor", "ours-1"),
        "stream_on": {"ours-1": "echo-p4"},
        "min_window": JITTER_WINDOW,
    },
    "audio-jitter-pkgbuffer": {
        "link": JITTER,
        "client_buffer": True,
        "servers": PACKAGE_CLIENT_SERVERS,
        "min_window": JITTER_WINDOW,
    },
}

CAPACITY_P95 = 0.250
CAPACITY_RETURNED = 0.95
# The capacity ladders: (name, stream, media kind, client). The WebRTC ladders use
# --capacity-client (replay by default); ws is FastRTC's audio WebSocket protocol.
CAPACITY = [
    ("video", "flip", "video", "replay"),
    ("audio", "echo", "audio", "replay"),
    ("ws", "echo", "audio", "ws"),
    # The same echo as an AsyncStreamHandler (ours; the floor echoes as for ws): the
    # session runtime without a sync handler's thread hand-offs. Only when asked for.
    ("ws-async", "echo-async", "audio", "ws"),
]
CAPACITY_LABELS = {
    "video": "video flip (WebRTC, 640x480 @ 30)",
    "audio": "audio echo (WebRTC, Opus 48 kHz)",
    "ws": "audio echo over FastRTC's WebSocket protocol (mu-law 48 kHz)",
    "ws-async": "the same, ours with an AsyncStreamHandler echo (no thread hand-offs)",
}


def cpu_list(text: str) -> list[int]:
    """taskset's list syntax: '0-3,8' -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def parse_ladder(text: str) -> list[int]:
    """'1,2,4' or START:STOP:STEP (STOP included)."""
    if ":" in text:
        start, stop, step = (int(v) for v in text.split(":"))
        return list(range(start, stop + 1, step))
    return [int(v) for v in text.split(",") if v.strip()]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status == 200
    except Exception:
        return False


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def system_busy() -> float:
    """CPU seconds all processes of the machine have used so far (every core)."""
    t = psutil.cpu_times()
    return (
        sum(t)
        - t.idle
        - getattr(t, "iowait", 0.0)
        - getattr(t, "guest", 0.0)
        - getattr(t, "guest_nice", 0.0)
    )


def wait_quiet(servers: list[Server], limit: float) -> float:
    """Wait until every server is idle and the rest of the machine uses < 0.25 core.

    Returns the other processes' load (cores) over the last check; other engineers'
    test runs share this machine, and a run measured under them is flagged.
    """
    deadline = time.monotonic() + limit
    while True:
        b0, c0 = system_busy(), sum(s.cpu() for s in servers)
        time.sleep(0.5)
        servers_busy = sum(s.cpu() for s in servers) - c0
        other = max(0.0, (system_busy() - b0 - servers_busy) / 0.5)
        if (servers_busy < 0.03 and other < 0.25) or time.monotonic() > deadline:
            return other


# -- servers ------------------------------------------------------------------------------


class Server:
    """One server under test: one or more processes, their bases and readiness URLs."""

    def __init__(
        self,
        key: str,
        label: str,
        workers: list[dict[str, Any]],
        logs: Path,
        needs_input_for_video: bool = False,
        services: list[str] | None = None,
    ) -> None:
        self.key, self.label = key, label
        self.workers = workers  # {"argv", "env", "base", "ready"[, "cwd"]}
        self.bases = [w["base"] for w in workers]
        self.logs = logs
        self.needs_input_for_video = needs_input_for_video
        self.services = services or []  # process names whose CPU counts as this server's too
        self.procs: list[subprocess.Popen] = []
        self.start_to_ready: list[float] = []

    def start(self) -> float:
        """Spawn every worker; seconds until all answer HTTP (polled every 10 ms)."""
        self.procs = []
        t0 = time.monotonic()
        for i, worker in enumerate(self.workers):
            # The worker gets its own copy of the descriptor: the parent's closes at once.
            with open(self.logs / f"{self.key}-{i}.log", "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        worker["argv"],
                        cwd=worker.get("cwd", ROOT),
                        env=worker["env"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        pending = {w["ready"] for w in self.workers}
        deadline = t0 + 60
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.key} not ready after 60 s (see {self.logs})")
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.key} exited with {proc.returncode} (see {self.logs})"
                    )
            pending = {url for url in pending if not http_ok(url, 0.2)}
            if pending:
                time.sleep(0.01)
        seconds = time.monotonic() - t0
        self.start_to_ready.append(seconds)
        return seconds

    def stop(self, grace: float = 10) -> int:
        """SIGTERM every worker, SIGKILL those still running after ``grace`` seconds;
        returns how many needed the SIGKILL."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        killed = 0
        for proc in self.procs:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
                killed += 1
        self.procs = []
        return killed

    def tree(self) -> list[psutil.Process]:
        out = []
        for proc in self.procs:
            try:
                root = psutil.Process(proc.pid)
                out.append(root)
                out.extend(root.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return out

    def cpu(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def service_cpu(self) -> float:
        if not self.services:
            return 0.0
        total = 0.0
        for p in psutil.process_iter(["name"]):
            try:
                if p.info["name"] in self.services:
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def settle(self, limit: float = 6.0) -> bool:
        """Wait until the server is idle (< 3% of a core over 0.3 s): the last run's sessions are gone."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            c0 = self.cpu()
            time.sleep(0.3)
            if self.cpu() - c0 < 0.009:
                return True
        return False


def ours_argv(asgi: str, port: int) -> list[str]:
    """One worker of the bench project under daphne (the README's ``runserver``) or
    uvicorn (docs/deployment.md's), on 127.0.0.1:``port``."""
    app = "bench.djproject.asgi:application"
    if asgi == "uvicorn":
        return [UVICORN, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", app]
    return [DAPHNE, "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]


def django_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.djproject.settings",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def prepare_postgres(url: str) -> bool:
    """Create the benchmark database if PostgreSQL is reachable; False if it is not."""
    try:
        from urllib.parse import urlsplit

        import psycopg

        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        admin = parts._replace(path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return True
    except Exception as exc:
        log(f"PostgreSQL not usable ({type(exc).__name__}: {exc}); ours-N uses SQLite")
        return False


def redis_ok(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return True
    except Exception as exc:
        log(f"Redis not usable ({type(exc).__name__}: {exc})")
        return False


def fastrtc_available() -> tuple[bool, str]:
    if not FASTRTC_PYTHON.exists():
        return False, f"{FASTRTC_PYTHON} missing (make bench creates it)"
    probe = subprocess.run(
        [
            str(FASTRTC_PYTHON),
            "-c",
            "import fastrtc, psutil; print(fastrtc.__version__ if hasattr(fastrtc, '__version__') else '')",
        ],
        capture_output=True,
        text=True,
        env=fastrtc_env(),
    )
    if probe.returncode != 0:
        return False, probe.stderr.strip().splitlines()[-1] if probe.stderr else "import failed"
    version = subprocess.run(
        [str(FASTRTC_PYTHON), "-m", "pip", "show", "fastrtc"], capture_output=True, text=True
    ).stdout
    for line in version.splitlines():
        if line.startswith("Version:"):
            return True, line.split(":", 1)[1].strip()
    return True, "?"


def fastrtc_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def build_servers(
    args: argparse.Namespace, logs: Path, tmp: Path
) -> tuple[list[Server], dict[str, str]]:
    servers: list[Server] = []
    unavailable: dict[str, str] = {}
    wanted = set(args.servers.split(",")) if args.servers else None

    def want(key: str) -> bool:
        return wanted is None or key in wanted or key.split("-")[0] in wanted

    port = free_port()
    servers.append(
        Server(
            "floor",
            "floor (bare aiortc)",
            [
                {
                    "argv": [PYTHON, str(BENCH / "floor_server.py"), "--port", str(port)],
                    "env": {**os.environ, "PYTHONUNBUFFERED": "1"},
                    "base": f"http://127.0.0.1:{port}",
                    "ready": f"http://127.0.0.1:{port}/ready",
                }
            ],
            logs,
        )
    )

    if want("ours-1"):
        env = django_env(
            {
                "BENCH_DB": str(tmp / "ours-1.sqlite3"),
                "BENCH_SQLITE_MODE": "DEFERRED" if args.sqlite_deferred else "IMMEDIATE",
            }
        )
        migrate(env)
        port = free_port()
        servers.append(
            Server(
                "ours-1",
                f"ours, 1 {args.asgi} worker",
                [
                    {
                        "argv": ours_argv(args.asgi, port),
                        "env": env,
                        "base": f"http://127.0.0.1:{port}/rtc",
                        "ready": f"http://127.0.0.1:{port}/rtc/flip/config",
                    }
                ],
                logs,
            )
        )

    if want("ours-N"):
        n = args.workers or CORES
        redis_url = (
            os.environ.get("BENCH_REDIS_URL")
            or os.environ.get("REDIS_URL")
            or "redis://127.0.0.1:6379/0"
        )
        pg_url = (
            os.environ.get("BENCH_DATABASE_URL")
            or "postgresql://postgres@127.0.0.1:5432/rtcstream_bench"
        )
        if not redis_ok(redis_url):
            unavailable[f"ours-{n}"] = f"Redis at {redis_url} not reachable"
        else:
            extra = {
                "BENCH_REDIS_URL": redis_url,
                "BENCH_REDIS_DEFAULTS": "1" if args.redis_defaults else "0",
            }
            services = ["redis-server"]
            if prepare_postgres(pg_url):
                extra["BENCH_DATABASE_URL"] = pg_url
                services.append("postgres")
            else:
                extra["BENCH_DB"] = str(tmp / "ours-n.sqlite3")
            migrate(django_env(extra))
            workers = []
            for i in range(n):
                port = free_port()
                workers.append(
                    {
                        "argv": ours_argv(args.asgi, port),
                        "env": django_env({**extra, "BENCH_WORKER_NAME": f"bench-{i}"}),
                        "base": f"http://127.0.0.1:{port}/rtc",
                        "ready": f"http://127.0.0.1:{port}/rtc/flip/config",
                    }
                )
            db = "PostgreSQL" if "BENCH_DATABASE_URL" in extra else "SQLite"
            servers.append(
                Server(
                    "ours-N",
                    f"ours, {n} {args.asgi} workers + Redis + {db}",
                    workers,
                    logs,
                    services=services,
                )
            )

    if want("fastrtc") and not args.no_fastrtc:
        ok, detail = fastrtc_available()
        if ok:
            port = free_port()
            servers.append(
                Server(
                    "fastrtc",
                    f"FastRTC {detail} (uvicorn)",
                    [
                        {
                            "argv": [
                                str(FASTRTC_PYTHON),
                                str(BENCH / "fastrtc_server.py"),
                                "--port",
                                str(port),
                            ],
                            "env": fastrtc_env(),
                            "base": f"http://127.0.0.1:{port}",
                            "ready": f"http://127.0.0.1:{port}/ready",
                        }
                    ],
                    logs,
                    needs_input_for_video=True,
                )
            )
        else:
            unavailable["fastrtc"] = f"not available: {detail}"
    elif args.no_fastrtc:
        unavailable["fastrtc"] = "not available: --no-fastrtc"
    return servers, unavailable


# -- one measurement ----------------------------------------------------------------------


def _readline(proc: subprocess.Popen, timeout: float) -> dict[str, Any] | None:
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        future = ex.submit(proc.stdout.readline)
        try:
            line = future.result(timeout)
        except concurrent.futures.TimeoutError:
            proc.kill()
            return None
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None


def measure(
    server: Server,
    stream: str,
    kind: str,
    n: int,
    client: str,
    window: float,
    warmup: float,
    grace: float,
    client_procs: int,
    everyone: list[Server] | None = None,
    quiet_limit: float = 10.0,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    options = options or {}
    stream = options.get("stream_on", {}).get(server.key, stream)
    bases = [server.bases[i % len(server.bases)] for i in range(n)]
    nproc = 1 if n == 1 else max(1, min(n, client_procs))
    groups = [[b for i, b in enumerate(bases) if i % nproc == j] for j in range(nproc)]
    # replay / ws clients: the first `sample` sessions (spread over the processes) decode
    # and time the round trip, the others count what comes back.
    sample = options.get("sample", n)
    sampled = [[i < sample for i in range(n) if i % nproc == j] for j in range(nproc)]
    pin = ["taskset", "-c", options["clients_cores"]] if options.get("clients_cores") else []
    pin = [*options.get("client_prefix", []), *pin]  # bench/hosts.py: ip netns exec <clients>
    procs = []
    for group, marks in zip(groups, sampled, strict=True):
        spec = {
            "kind": kind,
            "stream": stream,
            "client": client,
            "bases": group,
            "sampled": marks,
            "stagger": options.get("stagger", 0.05),
            "needs_input": server.needs_input_for_video and kind == "video",
            "link": options.get("link"),
            "client_buffer": options.get("client_buffer", False),
        }
        procs.append(
            subprocess.Popen(
                [*pin, PYTHON, str(BENCH / "client.py"), json.dumps(spec)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), **options.get("client_env", {})},
            )
        )
    # While the clients import: the last run's sessions gone, the machine quiet.
    settled = server.settle()
    with concurrent.futures.ThreadPoolExecutor(len(procs)) as ex:
        list(ex.map(lambda p: _readline(p, 60), procs))
    other_before = wait_quiet(everyone or [server], quiet_limit)
    rss0 = server.rss()
    for proc in procs:
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
    with concurrent.futures.ThreadPoolExecutor(len(procs)) as ex:
        connected = list(ex.map(lambda p: _readline(p, 90), procs))
    start = time.monotonic() + warmup
    end = start + window
    for proc in procs:
        try:
            proc.stdin.write(json.dumps({"window": [start, end], "grace": grace}) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
    time.sleep(max(0.0, start - time.monotonic()))
    spies = start_profiles(server, options.get("profile"), window)
    cpu0, svc0, sys0 = server.cpu(), server.service_cpu(), system_busy()
    peak = server.rss()
    while time.monotonic() < end - 0.05:
        time.sleep(min(0.25, max(0.0, end - time.monotonic() - 0.05)))
        peak = max(peak, server.rss())
    cpu1, svc1, sys1 = server.cpu(), server.service_cpu(), system_busy()
    load_avg = os.getloadavg()
    with concurrent.futures.ThreadPoolExecutor(len(procs)) as ex:
        results = list(ex.map(lambda p: _readline(p, window + grace + 60), procs))
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    sessions: list[dict[str, Any]] = []
    client_cpu = 0.0
    for result in results:
        if result and result.get("event") == "result":
            sessions.extend(result["sessions"])
            client_cpu += result["client_cpu"]
    profile = finish_profiles(spies)
    m = summarize(
        sessions, n, window, cpu1 - cpu0, svc1 - svc0, peak - rss0, client_cpu, settled, connected
    )
    m["load_avg"] = [round(v, 2) for v in load_avg]  # what `uptime` says, at the window's end
    if profile is not None:
        m["profile"] = profile
    # The rest of the machine during the window: everything but this server, its services
    # and the benchmark's clients (cores).
    m["other_load_cores"] = (
        max(0.0, (sys1 - sys0) - (cpu1 - cpu0) - (svc1 - svc0) - client_cpu) / window
    )
    m["other_load_before_cores"] = other_before
    return m


def measure_quiet(cfg: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``measure``, again (up to ``cfg["retries"]`` times) while other processes loaded the
    machine by more than ``cfg["max_other"]`` cores; keeps the least disturbed attempt."""
    best: dict[str, Any] | None = None
    for attempt in range(cfg["retries"] + 1):
        m = measure(*args, **kwargs)
        m["attempts"] = attempt + 1
        if best is None or m["other_load_cores"] < best["other_load_cores"]:
            best = m
        if m["other_load_cores"] <= cfg["max_other"]:
            break
        log(
            f"    (others used {m['other_load_cores']:.2f} cores during the window: measuring again)"
        )
    assert best is not None
    best["attempts"] = m["attempts"]
    return best


def summarize(
    sessions: list[dict[str, Any]],
    n: int,
    window: float,
    cpu: float,
    service_cpu: float,
    rss_delta: int,
    client_cpu: float,
    settled: bool,
    connected: list[Any],
) -> dict[str, Any]:
    ok = [s for s in sessions if s["error"] is None]
    errors = sorted({s["error"] for s in sessions if s["error"]})
    count_returns(ok, window)
    if any(s.get("stalled") for s in ok):
        errors.append(
            f"{sum(1 for s in ok if s.get('stalled'))} session(s) got nothing back in the window's last second"
        )
    if any(s["ended_early"] for s in ok):
        errors.append(
            f"{sum(1 for s in ok if s['ended_early'])} session(s) stopped sending before the window ended"
        )
    rts = [r[1] for s in ok for r in s["rt"]]
    quarters = []
    for q in range(4):
        lo, hi = q * window / 4, (q + 1) * window / 4
        quarters.append(median([r[1] for s in ok for r in s["rt"] if lo <= r[0] < hi]))
    sent = sum(s["expected"] for s in ok)  # frames a live session sends in the window
    returned = sum(s["returned"] for s in ok)
    live = max(1, len(ok))
    return {
        "sessions": n,
        "connected": len(ok),
        "errors": errors[:5],
        "signaling": median([s["signaling"] for s in ok]),
        "offer_to_connected": median([s["connected"] for s in ok]),
        "offer_to_first_frame": median([s["first_frame"] for s in ok]),
        "rt_median": median(rts),
        "rt_p95": percentile(rts, 0.95),
        "rt_quarters": quarters,
        "returned": (returned / sent) if sent else None,
        "frames_sent": sent,
        "frames_returned": returned,
        "cpu_per_session_s": cpu / (live * window) if ok else None,
        "service_cpu_per_session_s": service_cpu / (live * window) if ok and service_cpu else None,
        "rss_per_session_mb": rss_delta / live / 2**20 if ok else None,
        "client_cpu_per_session_s": client_cpu / (live * window) if ok else None,
        "ended_early": sum(1 for s in ok if s["ended_early"]),
        "stalled": sum(1 for s in ok if s.get("stalled")),
        "sampled": sum(1 for s in ok if "counted" not in s),
        "keyframes_asked": sum(s.get("keyframes", 0) for s in ok),
        "lost": (sent - returned) if ok else None,
        "gaps": sum(s["gaps"] for s in ok) if ok and all("gaps" in s for s in ok) else None,
        "gap_frames": sum(s["gap_frames"] for s in ok)
        if ok and all("gaps" in s for s in ok)
        else None,
        "unflipped": sum(s["unflipped"] for s in ok),
        "unreadable": sum(s["unreadable"] for s in ok),
        "unidentified": sum(s["unidentified"] for s in ok),
        "settled_before": settled,
        "clients_reported": sum(1 for c in connected if c),
    }


def count_returns(sessions: list[dict[str, Any]], window: float) -> None:
    """Frames (audio: bursts) back for the sessions that counted instead of decoding.

    A counting session has the arrival times (relative to the window's start) of
    what came back. Those that belong to the window are the ones that arrived in
    the window shifted by the sampled sessions' median round trip; at most as many
    as were sent count. The sampled sessions' round trips are the measured ones.
    """
    rts = [r[1] for s in sessions for r in s["rt"]]
    shift = statistics.median(rts) if rts else 0.0
    for s in sessions:
        if "counted" not in s:
            continue
        back = sum(1 for t in s["counted"] if shift <= t < window + shift)
        s["returned"] = min(back, s["expected"])


def machine_load(m: dict[str, Any]) -> dict[str, float | None]:
    """Cores busy during a run: the server (+ its services), the benchmark's clients, the rest."""
    live = m["connected"]
    if not live or m["cpu_per_session_s"] is None:
        return {"server_cores": None, "client_cores": None, "machine_cores": None}
    server = live * (m["cpu_per_session_s"] + (m["service_cpu_per_session_s"] or 0.0))
    client = live * (m["client_cpu_per_session_s"] or 0.0)
    return {
        "server_cores": server,
        "client_cores": client,
        "machine_cores": server + client + m["other_load_cores"],
    }


def passes_capacity(m: dict[str, Any]) -> bool:
    """The SLO: every session connected and alive, p95 round trip <= 250 ms (sampled
    sessions), >= 95 % of frames (audio: bursts) back (every session)."""
    return (
        m["connected"] == m["sessions"]
        and not m["ended_early"]
        and not m.get("stalled")
        and m["rt_p95"] is not None
        and m["rt_p95"] <= CAPACITY_P95
        and m["returned"] is not None
        and m["returned"] >= CAPACITY_RETURNED
    )


def capacity_report(
    capacity: dict[str, Any],
    ladder: list[int],
    args: argparse.Namespace,
    unavailable: dict[str, str],
) -> list[str]:
    lines = [
        f"== capacity: sessions with p95 round trip <= {CAPACITY_P95 * 1000:.0f} ms, "
        f">= {CAPACITY_RETURNED:.0%} frames (audio: bursts) back, none dropped "
        f"(ladder {ladder}, stops at the first failure; client {args.capacity_client}, "
        f"{args.sample} sampled per step; clients on cores {args.clients_cores or 'any'}, "
        f"servers on {args.server_cores or 'any'}; {CORES} cores)"
    ]
    for name, by_server in capacity.items():
        lines.append(f"  -- {CAPACITY_LABELS.get(name, name)}")
        fl = by_server.get("floor", {}).get("capacity")
        for key, c in by_server.items():
            r_ = ratio(c["capacity"], fl) if key != "floor" else None
            fails = [r["steps"][-1] for r in c["runs"] if r["steps"] and not r["steps"][-1]["pass"]]
            at = ""
            if fails:
                f = fails[0]
                why = []
                if f["connected"] < f["sessions"]:
                    why.append(f"{f['sessions'] - f['connected']} not connected")
                if f["rt_p95"] is not None and f["rt_p95"] > CAPACITY_P95:
                    why.append(f"p95 {f['rt_p95'] * 1000:.0f} ms")
                if f["returned"] is not None and f["returned"] < CAPACITY_RETURNED:
                    why.append(f"{f['returned']:.0%} back")
                if f.get("stalled") or f.get("ended_early"):
                    why.append(f"{(f.get('stalled') or 0) + (f.get('ended_early') or 0)} dropped")
                busy = (
                    f"{f['machine_cores']:.2f} of {CORES} cores busy (server {f['server_cores']:.2f}, "
                    f"clients {f['client_cores']:.2f}, others {f['other_load_cores']:.2f})"
                    if f.get("machine_cores") is not None
                    else "no session measured"
                )
                at = (
                    f"; first failure at {f['sessions']} ({', '.join(why) or 'see log'}): {busy}, "
                    f"load average {f['load_avg'][0]:.2f}"
                )
            lines.append(
                f"  {key:<10} {c['capacity']!s:>5}"
                + (f" ({r_:.2f}x)" if r_ else "")
                + "   runs: "
                + ", ".join(str(r["capacity"]) for r in c["runs"])
                + at
            )
        for key in unavailable:
            lines.append(f"  {key:<10}   n/a")
        for key, c in by_server.items():
            for r in c["runs"]:
                for step in r["steps"]:
                    prof = step.get("profile")
                    if not prof or step is not r["steps"][-1]:
                        continue
                    lines.append(
                        f"    profile {key} at {step['sessions']} sessions ({prof['samples']} samples): "
                        + ", ".join(f"{k} {v:.0%}" for k, v in prof["places"].items())
                    )
                    for fn, share in prof["top_own"][:8]:
                        lines.append(f"      {share:6.1%}  {fn}")
    return lines


# -- profiles (py-spy) ------------------------------------------------------------------------

PY_SPY = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))


def start_profiles(
    server: Server, spec: dict[str, Any] | None, window: float
) -> list[tuple[subprocess.Popen, Path]] | None:
    """py-spy on every process of the server for the window (sampling, not stopping it)."""
    if not spec:
        return None
    spies = []
    for i, proc in enumerate(server.procs):
        path = Path(spec["dir"]) / f"{spec['name']}-{server.key}-{i}.txt"
        argv = [PY_SPY, "record", "--pid", str(proc.pid), "--duration", str(max(1, round(window)))]
        # --nonblocking: py-spy otherwise stops every thread for each sample, and ours runs
        # a thread per session: at 48 sessions that froze the server (5 % of frames back).
        argv += ["--rate", "100", "--nonblocking", "--format", "raw", "--output", str(path)]
        spies.append(
            (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path)
        )
    return spies


# Where a sampled frame's code lives: ours, aiortc's stack, PyAV, the servers' frameworks.
PLACES = (
    ("ours", ("django_rtcstream/",)),
    ("codecs (aiortc.codecs -> PyAV/libvpx/opus)", ("aiortc/codecs/",)),
    ("bench handlers", ("bench/",)),
    ("aiortc/aioice/crypto", ("aiortc/", "aioice/", "pylibsrtp/", "cryptography/", "OpenSSL/")),
    ("PyAV", ("av/",)),
    ("numpy", ("numpy/",)),
    ("asyncio/threads", ("asyncio/", "threading.py", "concurrent/", "queue.py", "selectors.py")),
    (
        "server framework",
        (
            "django/",
            "channels",
            "daphne/",
            "twisted/",
            "autobahn/",
            "aiohttp/",
            "uvicorn/",
            "starlette/",
            "fastapi/",
            "anyio/",
            "gradio/",
            "redis/",
            "psycopg/",
            "asgiref/",
        ),
    ),
    ("fastrtc", ("fastrtc/",)),
)


# Leaf functions that block a thread rather than use CPU.
WAITS = {
    "EpollSelector.select",
    "select",
    "Condition.wait",
    "_worker",
    "Queue.get",
    "SimpleQueue.get",
    "Event.wait",
    "sleep",
    "_wait_for_tstate_lock",
    "Thread.join",
    "poll",
    "OwnThread._worker",  # django_rtcstream.sessions.pool: waiting on its queue
}


def place(frame: str) -> str:
    for name, needles in PLACES:
        if any(n in frame for n in needles):
            return name
    return "other"


def finish_profiles(spies: list[tuple[subprocess.Popen, Path]] | None) -> dict[str, Any] | None:
    """Top functions by own samples, and the share of samples by place (see PLACES)."""
    if not spies:
        return None
    own: dict[str, int] = {}
    places: dict[str, int] = {}
    total = 0
    for proc, path in spies:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            leaf = frames[-1]
            if leaf.split(" (")[0] in WAITS:
                continue  # a thread waiting (py-spy's idle heuristic misses some): no CPU
            n = int(count)
            total += n
            # "function (path/file.py:line)" -> "function (file.py)" without the line
            name = leaf.split(":")[0] + ")" if ":" in leaf else leaf
            name = name.replace(str(ROOT) + "/", "")
            if "site-packages/" in name:
                name = name.split("(")[0] + "(" + name.split("site-packages/", 1)[1]
            own[name] = own.get(name, 0) + n
            # the innermost frame that is not the standard library's or a thread's plumbing
            where = next((place(f) for f in reversed(frames) if place(f) != "other"), "other")
            places[where] = places.get(where, 0) + n
    if not total:
        return None
    top = sorted(own.items(), key=lambda kv: -kv[1])[:15]
    return {
        "samples": total,
        "files": [str(path) for _, path in spies],
        "top_own": [[name, round(n / total, 4)] for name, n in top],
        "places": {
            k: round(v / total, 4) for k, v in sorted(places.items(), key=lambda kv: -kv[1])
        },
    }


# -- startup figures ----------------------------------------------------------------------


def import_time(python: str, statement: str, repeats: int, env: dict[str, str]) -> float | None:
    code = "import time; t = time.perf_counter(); " + statement + "; print(time.perf_counter() - t)"
    values = []
    for _ in range(repeats):
        out = subprocess.run(
            [python, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            return None
        values.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


# -- aggregation, table, targets -----------------------------------------------------------

METRICS = [
    ("signaling", "signaling: offer posted -> answer (ms)", 1000),
    ("offer_to_connected", "offer -> connected (ms)", 1000),
    ("offer_to_first_frame", "offer -> first returned frame (ms)", 1000),
    ("rt_median", "round trip, median (ms)", 1000),
    ("rt_p95", "round trip, p95 (ms)", 1000),
    ("rt_quarters", "round trip median per quarter (ms)", 1000),
    ("returned", "frames returned (%)", 100),
    ("lost", "frames (audio: bursts) not back in time", 1),
    ("gaps", "audio gaps at the client's receiver", 1),
    ("gap_frames", "audio frames missing in those gaps", 1),
    ("cpu_per_session_s", "server CPU s per session-second", 1),
    ("service_cpu_per_session_s", "  + Redis/PostgreSQL CPU s per session-s", 1),
    ("rss_per_session_mb", "server RSS per session (MB)", 1),
    ("client_cpu_per_session_s", "client CPU s per session-second", 1),
    ("connected", "sessions connected", 1),
    ("other_load_cores", "other processes' load during window (cores)", 1),
]


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"repeats": len(runs)}
    for key, _, _ in METRICS:
        if key == "rt_quarters":
            out[key] = [median([r[key][q] for r in runs]) for q in range(4)]
        else:
            out[key] = median([r.get(key) for r in runs])
    out["sessions"] = runs[0]["sessions"] if runs else None
    out["errors"] = sorted({e for r in runs for e in r["errors"]})[:5]
    out["unflipped"] = sum(r["unflipped"] for r in runs)
    return out


def ratio(value: Any, floor: Any) -> float | None:
    if isinstance(value, (int, float)) and isinstance(floor, (int, float)) and floor:
        return value / floor
    return None


def fmt(value: Any, scale: float, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "/".join(fmt(v, scale, 0) for v in value)
    v = value * scale
    if scale == 1 and isinstance(value, float) and abs(v) < 10:
        return f"{v:.3f}"
    return f"{v:.{digits}f}"


def table(
    summary: dict[str, dict[str, Any]],
    order: list[str],
    labels: dict[str, str],
    unavailable: dict[str, str],
) -> str:
    lines = []
    cols = list(order) + [k for k in unavailable if k not in order]
    width = 44
    colw = 22
    for scenario, by_server in summary.items():
        n = next((m["sessions"] for m in by_server.values() if m), "?")
        lines.append("")
        lines.append(f"== {scenario} ({n} session{'s' if n != 1 else ''}; value (x floor))")
        lines.append(" " * width + "".join(f"{c:>{colw}}" for c in cols))
        floor = by_server.get("floor") or {}
        for key, label, scale in METRICS:
            if all((by_server.get(c) or {}).get(key) in (None, [None] * 4) for c in cols):
                continue
            row = f"{label:<{width}}"
            for c in cols:
                m = by_server.get(c)
                if c in unavailable and not m:
                    cell = "n/a"
                elif not m:
                    cell = "-"
                else:
                    cell = fmt(m.get(key), scale)
                    r = (
                        ratio(m.get(key), floor.get(key))
                        if c != "floor" and key not in ("rt_quarters", "other_load_cores")
                        else None
                    )
                    if r is not None and key != "connected":
                        cell += f" ({r:.2f}x)"
                row += f"{cell:>{colw}}"
            lines.append(row)
        errs = {c: m["errors"] for c, m in by_server.items() if m and m.get("errors")}
        for c, e in errs.items():
            lines.append(f"  errors on {c}: {e}")
    return "\n".join(lines)


def evaluate_targets(
    summary: dict[str, dict[str, Any]],
    capacity: dict[str, Any],
    startup: dict[str, Any],
    ours: list[str],
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(
        name: str,
        server: str,
        value: float | None,
        limit: float | None,
        unit: str,
        scale: float,
        detail: str,
    ) -> None:
        if value is None or limit is None:
            targets.append(
                {
                    "target": name,
                    "server": server,
                    "value": value,
                    "limit": limit,
                    "status": "not measured",
                    "detail": detail,
                }
            )
            return
        ok = value <= limit
        margin = (value - limit) * scale
        targets.append(
            {
                "target": name,
                "server": server,
                "value": value,
                "limit": limit,
                "status": "PASS" if ok else "FAIL",
                "detail": f"{value * scale:.1f} {unit} vs limit {limit * scale:.1f} {unit} "
                f"({'+' if margin >= 0 else ''}{margin:.1f} {unit}); {detail}",
            }
        )

    def measured(scenarios: tuple[str, ...]) -> Any:
        """(scenario, server, its figures, the floor's) for each of ours measured there."""
        for scenario in scenarios:
            by = summary.get(scenario, {})
            for server in ours:
                if by.get(server):
                    yield scenario, server, by[server], by.get("floor") or {}

    for scenario, server, m, floor in measured(("video-1", "audio-1", "video-many", "audio-many")):
        for key, extra, label in (
            ("signaling", 0.010, "signaling <= floor + 10 ms"),
            ("offer_to_connected", 0.015, "offer->connected <= floor + 15 ms"),
            ("offer_to_first_frame", 0.025, "offer->first frame <= floor + 25 ms"),
        ):
            f = floor.get(key)
            add(
                f"{label} [{scenario}]",
                server,
                m.get(key),
                None if f is None else f + extra,
                "ms",
                1000,
                f"floor {fmt(f, 1000)} ms",
            )
        f = floor.get("rt_median")
        if scenario.startswith("video"):
            add(
                f"video round trip median <= floor + 5 ms [{scenario}]",
                server,
                m.get("rt_median"),
                None if f is None else f + 0.005,
                "ms",
                1000,
                f"floor {fmt(f, 1000)} ms",
            )
        else:
            add(
                f"audio round trip median <= floor - 50 ms, stock client [{scenario}]",
                server,
                m.get("rt_median"),
                None if f is None else f - 0.050,
                "ms",
                1000,
                f"floor {fmt(f, 1000)} ms",
            )
        for key, label, unit, scale in (
            ("cpu_per_session_s", "server CPU per session-second <= 1.1 x floor", "ms/s", 1000),
            ("rss_per_session_mb", "RSS per session <= 1.1 x floor", "MB", 1),
        ):
            if key == "rss_per_session_mb" and not scenario.endswith("many"):
                continue  # one session's RSS growth is within allocator noise
            f = floor.get(key)
            value = m.get(key)
            if (
                key == "cpu_per_session_s"
                and value is not None
                and m.get("service_cpu_per_session_s")
            ):
                value = value + m["service_cpu_per_session_s"]
            add(
                f"{label} [{scenario}]",
                server,
                value,
                None if f is None else 1.1 * max(f, 0.0),
                unit,
                scale,
                f"floor {fmt(f, scale)} {unit}",
            )
    for scenario, server, m, floor in measured(("audio-jitter", "audio-jitter-inorder")):
        f = floor.get("rt_median")
        add(
            f"jittery link: audio round trip <= floor - 50 ms (saving kept) [{scenario}]",
            server,
            m.get("rt_median"),
            None if f is None else f - 0.050,
            "ms",
            1000,
            f"floor {fmt(f, 1000)} ms",
        )
        for key, label in (
            ("lost", "bursts not back"),
            ("gap_frames", "frames missing at the client"),
        ):
            f = floor.get(key)
            add(
                f"jittery link: {label} <= aiortc's default (floor) [{scenario}]",
                server,
                m.get(key),
                f,
                "",
                1,
                f"floor {fmt(f, 1)}",
            )
    floor_audio = (summary.get("audio-1", {}).get("floor") or {}).get("rt_median")
    pkg = (summary.get("audio-1-pkgclient", {}).get("ours-1") or {}).get("rt_median")
    add(
        "audio round trip median <= 0.4 x floor, package client [audio-1-pkgclient]",
        "ours-1",
        pkg,
        None if floor_audio is None else 0.4 * floor_audio,
        "ms",
        1000,
        f"floor (stock client) {fmt(floor_audio, 1000)} ms",
    )
    for server in ours:
        m = summary.get("slow-video-1", {}).get(server)
        if not m:
            continue
        q = [v for v in m["rt_quarters"] if v is not None]
        spread = (max(q) - min(q)) if len(q) == 4 else None
        add(
            "slow handler (3x frame period): round-trip quarter medians flat (spread <= 20 ms)",
            server,
            spread,
            0.020,
            "ms",
            1000,
            f"quarters {fmt(m['rt_quarters'], 1000)} ms",
        )
        ret = m.get("returned")
        add(
            "slow handler: frames dropped, not queued (returned <= 50%)",
            server,
            ret,
            0.5,
            "%",
            100,
            "a 100 ms handler can return at most ~33% of 30 fps",
        )
    for name, by_server in capacity.items():
        fast = by_server.get("fastrtc", {}).get("capacity")
        floor_c = by_server.get("floor", {}).get("capacity")
        for server in ours:
            c = by_server.get(server, {}).get("capacity")
            if c is None:
                continue
            if server == "ours-1":
                targets.append(
                    {
                        "target": f"sessions at SLO >= the floor's [{name}]",
                        "server": server,
                        "value": c,
                        "limit": floor_c,
                        "status": "not measured"
                        if floor_c is None
                        else ("PASS" if c >= floor_c else "FAIL"),
                        "detail": f"{c} sessions vs floor {floor_c}",
                    }
                )
            elif fast is not None:
                targets.append(
                    {
                        "target": f"sessions at SLO >= 1.8 x FastRTC [{name}]",
                        "server": server,
                        "value": c,
                        "limit": 1.8 * fast,
                        "status": "PASS" if c >= 1.8 * fast else "FAIL",
                        "detail": f"{c} sessions vs FastRTC {fast} (needs >= {1.8 * fast:.1f})",
                    }
                )
            else:
                targets.append(
                    {
                        "target": f"sessions at SLO >= 1.8 x FastRTC [{name}]",
                        "server": server,
                        "value": c,
                        "limit": None,
                        "status": "not measured",
                        "detail": "FastRTC not measured",
                    }
                )
    add(
        "import django_rtcstream <= 0.1 s",
        "ours",
        startup.get("import", {}).get("ours"),
        0.1,
        "ms",
        1000,
        "median of fresh interpreters",
    )
    for server in ours:
        add(
            "start-to-ready <= 1 s",
            server,
            startup.get("start_to_ready", {}).get(server),
            1.0,
            "ms",
            1000,
            "spawn -> first HTTP answer (all workers)",
        )
    return targets


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short run (default)")
    mode.add_argument("--full", action="store_true", help="repeats, longer windows")
    parser.add_argument("--repeats", type=int, help="override the mode's repeats")
    parser.add_argument("--window", type=float, help="measurement window per run, seconds")
    parser.add_argument("--many", type=int, help="sessions in the 'many' scenarios")
    parser.add_argument("--workers", type=int, help=f"workers of ours-N (default: cores = {CORES})")
    parser.add_argument(
        "--client-procs",
        type=int,
        help="client processes for many sessions (default: the cores of --clients-cores, or all)",
    )
    parser.add_argument("--servers", help="comma-separated subset: floor,ours-1,ours-N,fastrtc")
    parser.add_argument(
        "--asgi",
        choices=("daphne", "uvicorn"),
        default="daphne",
        help="ASGI server of ours-1 and ours-N (default daphne, as `runserver` with daphne "
        "in INSTALLED_APPS; docs/deployment.md runs uvicorn)",
    )
    parser.add_argument(
        "--scenarios", help="comma-separated subset of scenario keys, or 'capacity'"
    )
    parser.add_argument("--no-capacity", action="store_true", help="skip the capacity search")
    parser.add_argument(
        "--capacity",
        default="video,audio,ws",
        help="capacity ladders to run: video (flip), audio (echo), ws (echo over FastRTC's "
        "audio WebSocket), ws-async (the same with an async echo handler, not FastRTC); "
        "default the first three",
    )
    parser.add_argument(
        "--ladder",
        help="session counts of the ladder: '1,2,4,8' or START:STOP:STEP (e.g. 10:200:10); "
        "default: the mode's",
    )
    parser.add_argument("--capacity-window", type=float, help="seconds measured per ladder step")
    parser.add_argument(
        "--capacity-client",
        default="replay",
        choices=("replay", "stock"),
        help="WebRTC client of the ladders: replay (pre-encoded, counts most sessions; default) "
        "or stock (encodes and decodes every session)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=2,
        help="sessions per ladder step that decode and time the round trip (the rest count)",
    )
    parser.add_argument(
        "--clients-cores",
        help="CPU list for the client processes (taskset -c), e.g. 8-15; servers get the rest "
        "unless --server-cores says otherwise",
    )
    parser.add_argument("--server-cores", help="CPU list for the server processes (taskset -c)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy every server process during each ladder step's window (raw stacks in the "
        "logs folder, top functions in the report)",
    )
    parser.add_argument("--no-fastrtc", action="store_true")
    parser.add_argument(
        "--redis-defaults",
        action="store_true",
        help="ours-N with redis-py's default socket timeout, to reproduce sessions dying after 5 s",
    )
    parser.add_argument(
        "--sqlite-deferred",
        action="store_true",
        help="ours-1 with SQLite's default (deferred) transactions, to reproduce 'database is locked'",
    )
    parser.add_argument("--out", help="JSON path (default bench/results/<time>-<mode>.json)")
    args = parser.parse_args()
    if args.scenarios == "turns":  # the turn-taking scenario runs handlers, not servers
        turns = str(Path(__file__).resolve().parent / "turns.py")
        extra = ["--json", args.out] if args.out else []
        os.execv(sys.executable, [sys.executable, turns, *extra])
    # kill <pid> stops the servers too (the finally block below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mode_name = "full" if args.full else "quick"
    cfg = dict(MODES[mode_name])
    for key in ("repeats", "window", "many"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    t_begin = time.monotonic()
    started = datetime.datetime.now().astimezone()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    logs = RESULTS / f"logs-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rtcstream-bench-"))
    head = git_head()  # the code the servers start with
    command = " ".join(
        [
            os.path.relpath(PYTHON, ROOT) if PYTHON.startswith(str(ROOT)) else PYTHON,
            "bench/run.py",
            *sys.argv[1:],
        ]
    )

    if args.client_procs is None:
        args.client_procs = len(cpu_list(args.clients_cores)) if args.clients_cores else CORES
    servers, unavailable = build_servers(args, logs, tmp)
    if args.server_cores:
        for server in servers:
            for worker in server.workers:
                worker["argv"] = ["taskset", "-c", args.server_cores, *worker["argv"]]
    labels = {s.key: s.label for s in servers}
    ours = [s.key for s in servers if s.key.startswith("ours")]
    log(f"mode {mode_name}: {cfg}")
    log(
        "servers: "
        + ", ".join(f"{s.key} = {s.label}" for s in servers)
        + "".join(f"; {k}: {v}" for k, v in unavailable.items())
    )

    startup: dict[str, Any] = {
        "import": {},
        "import_detail": {},
        "start_to_ready": {},
        "start_to_ready_all": {},
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = cfg["import_repeats"]
    startup["import"]["floor"] = import_time(PYTHON, "import aiortc", r, env)
    startup["import"]["ours"] = import_time(PYTHON, "import django_rtcstream", r, env)
    startup["import_detail"]["from django_rtcstream import Stream"] = import_time(
        PYTHON, "from django_rtcstream import Stream", r, env
    )
    startup["import_detail"]["django.setup() with the bench project"] = import_time(
        PYTHON,
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'bench.djproject.settings'; "
        "import django; django.setup()",
        r,
        django_env({"BENCH_DB": str(tmp / "ours-1.sqlite3")}),
    )
    if any(s.key == "fastrtc" for s in servers):
        startup["import"]["fastrtc"] = import_time(
            str(FASTRTC_PYTHON), "import fastrtc", r, fastrtc_env()
        )
    log(f"imports: {startup['import']} {startup['import_detail']}")

    try:
        # start-to-ready: optional extra cold cycles, then the start that serves the run
        for _ in range(cfg["start_cycles"]):
            for server in servers:
                wait_quiet([], cfg["quiet_limit"])
                server.start()
                server.stop()
        for server in servers:
            wait_quiet([], cfg["quiet_limit"])
            seconds = server.start()
            log(f"started {server.key} in {seconds:.3f} s")
        for server in servers:
            startup["start_to_ready"][server.key] = median(server.start_to_ready)
            startup["start_to_ready_all"][server.key] = server.start_to_ready

        # warm-up: one short video and audio session per worker of each server (lazy imports,
        # caches), so no scenario measures a worker's first session
        def warm(server: Server) -> None:
            for stream, kind in (("flip", "video"), ("echo", "audio")):
                measure(
                    server,
                    stream,
                    kind,
                    len(server.bases),
                    "stock",
                    1.0,
                    0.3,
                    0.3,
                    len(server.bases),
                    [server],
                    0.0,
                )

        with concurrent.futures.ThreadPoolExecutor(len(servers)) as ex:
            list(ex.map(warm, servers))
        log(f"warm-up done at {time.monotonic() - t_begin:.0f} s")

        selected = set(args.scenarios.split(",")) if args.scenarios else None
        runs: list[dict[str, Any]] = []
        for rep in range(cfg["repeats"]):
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
            for key, stream, kind, count, client in SCENARIOS:
                if selected and key not in selected:
                    continue
                n = 1 if count == "1" else cfg["many"]
                options = SCENARIO_OPTIONS.get(key, {})
                for server in order:
                    if client == "package" and server.key not in PACKAGE_CLIENT_SERVERS:
                        continue
                    if "servers" in options and server.key not in options["servers"]:
                        continue
                    window = max(cfg["window"], options.get("min_window", 0.0))
                    if "link" in options:  # every server of a repeat sees the same drops and delays
                        options = {**options, "link": {**options["link"], "seed": rep + 1}}
                    m = measure_quiet(
                        cfg,
                        server,
                        stream,
                        kind,
                        n,
                        client,
                        window,
                        cfg["warmup"],
                        cfg["grace"],
                        args.client_procs,
                        servers,
                        cfg["quiet_limit"],
                        options=options,
                    )
                    runs.append({"repeat": rep, "scenario": key, "server": server.key, **m})
                    log(
                        f"[{time.monotonic() - t_begin:5.0f} s] rep {rep} {key:<18} {server.key:<8} "
                        f"rt {fmt(m['rt_median'], 1000)}/{fmt(m['rt_p95'], 1000)} ms  "
                        f"back {fmt(m['returned'], 100)}%  sig {fmt(m['signaling'], 1000)} ms  "
                        f"cpu {fmt(m['cpu_per_session_s'], 1)}  conn {m['connected']}/{n}  "
                        f"others {m['other_load_cores']:.2f} cores"
                        + (f"  errors {m['errors']}" if m["errors"] else "")
                    )

        capacity: dict[str, Any] = {}
        ladder = parse_ladder(args.ladder) if args.ladder else cfg["ladder"]
        cap_window = args.capacity_window or cfg["capacity_window"]
        ladders = [c for c in CAPACITY if c[0] in args.capacity.split(",")] if args.capacity else []
        if not args.no_capacity and (not selected or "capacity" in selected):
            for rep in range(cfg["repeats"]):
                order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
                for name, stream, kind, default_client in ladders:
                    client = default_client if name.startswith("ws") else args.capacity_client
                    for server in order:
                        if name == "ws-async" and server.key == "fastrtc":
                            continue  # its echo is sync; the ladder is about ours
                        best, steps = 0, []
                        for n in ladder:
                            profile = None
                            if args.profile:
                                profile = {"dir": logs, "name": f"profile-{name}-rep{rep}-n{n}"}
                            m = measure_quiet(
                                cfg,
                                server,
                                stream,
                                kind,
                                n,
                                client,
                                cap_window,
                                cfg["warmup"],
                                cfg["grace"],
                                args.client_procs,
                                servers,
                                cfg["quiet_limit"],
                                options={
                                    "sample": args.sample,
                                    "clients_cores": args.clients_cores,
                                    "profile": profile,
                                    "stagger": 0.05 / max(1, n // 20),
                                },
                            )
                            ok = passes_capacity(m)
                            steps.append(
                                {
                                    "sessions": n,
                                    "pass": ok,
                                    "rt_p95": m["rt_p95"],
                                    "rt_quarters": m["rt_quarters"],
                                    "returned": m["returned"],
                                    "connected": m["connected"],
                                    "stalled": m["stalled"],
                                    "ended_early": m["ended_early"],
                                    "cpu_per_session_s": m["cpu_per_session_s"],
                                    "client_cpu_per_session_s": m["client_cpu_per_session_s"],
                                    "other_load_cores": m["other_load_cores"],
                                    "load_avg": m["load_avg"],
                                    "errors": m["errors"],
                                    "profile": m.get("profile"),
                                    **machine_load(m),
                                }
                            )
                            log(
                                f"[{time.monotonic() - t_begin:5.0f} s] capacity {name} rep {rep} "
                                f"{server.key:<8} n={n:<4} p95 {fmt(m['rt_p95'], 1000)} ms "
                                f"(quarters {fmt(m['rt_quarters'], 1000)}) "
                                f"back {fmt(m['returned'], 100)}% conn {m['connected']}/{n} "
                                f"server {fmt(m['cpu_per_session_s'], 1)} client "
                                f"{fmt(m['client_cpu_per_session_s'], 1)} s/session-s, others "
                                f"{m['other_load_cores']:.2f} cores, load avg {m['load_avg'][0]:.2f}"
                                f" -> {'pass' if ok else 'FAIL'}"
                                + (f" {m['errors']}" if m["errors"] else "")
                            )
                            if not ok:
                                break
                            best = n
                        capacity.setdefault(name, {}).setdefault(server.key, {"runs": []})[
                            "runs"
                        ].append({"capacity": best, "steps": steps})
            for by_server in capacity.values():
                for c in by_server.values():
                    c["capacity"] = median([r["capacity"] for r in c["runs"]])
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[str, dict[str, Any]] = {}
    for key, *_ in SCENARIOS:
        for server in servers:
            mine = [r for r in runs if r["scenario"] == key and r["server"] == server.key]
            if mine:
                summary.setdefault(key, {})[server.key] = aggregate(mine)
    order = [s.key for s in servers]
    targets = evaluate_targets(summary, capacity, startup, ours)

    text = [
        f"django-rtcstream benchmark ({mode_name}), {started:%Y-%m-%d %H:%M %Z}, {CORES} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "servers: "
        + "; ".join(f"{k} = {v}" for k, v in labels.items())
        + "".join(f"; {k}: {v}" for k, v in unavailable.items()),
    ]
    text.append(table(summary, order, labels, unavailable))
    text.append("")
    text.append("== startup (value (x floor))")
    fl = startup["import"].get("floor")
    for key, value in startup["import"].items():
        name = {
            "floor": "import aiortc",
            "ours": "import django_rtcstream",
            "fastrtc": "import fastrtc",
        }[key]
        r_ = ratio(value, fl) if key != "floor" else None
        text.append(f"  {name:<42} {fmt(value, 1000):>8} ms" + (f" ({r_:.2f}x)" if r_ else ""))
    for name, value in startup["import_detail"].items():
        text.append(f"  {name:<42} {fmt(value, 1000):>8} ms")
    fl = startup["start_to_ready"].get("floor")
    for key, value in startup["start_to_ready"].items():
        r_ = ratio(value, fl) if key != "floor" else None
        text.append(
            f"  start-to-ready {key:<27} {fmt(value, 1000):>8} ms" + (f" ({r_:.2f}x)" if r_ else "")
        )
    if capacity:
        text.append("")
        text.extend(capacity_report(capacity, ladder, args, unavailable))
    text.append("")
    text.append("== targets")
    for t in targets:
        text.append(f"  {t['status']:<12} {t['server']:<7} {t['target']}: {t['detail']}")
    elapsed = time.monotonic() - t_begin
    text.append("")
    text.append(f"elapsed {elapsed:.0f} s; command: {command}")
    report = "\n".join(text)
    print(report)

    data = {
        "meta": {
            "mode": mode_name,
            "config": cfg,
            "started": started.isoformat(),
            "elapsed_s": elapsed,
            "command": command,
            "cores": CORES,
            "python": platform.python_version(),
            "machine": platform.platform(),
            "client_procs": args.client_procs,
            "versions": versions(),
            "git": head,
        },
        "servers": {s.key: {"label": s.label, "workers": len(s.workers)} for s in servers},
        "unavailable": unavailable,
        "startup": startup,
        "summary": summary,
        "capacity": capacity,
        "targets": targets,
        "runs": runs,
        "report": report,
    }
    out = Path(args.out) if args.out else RESULTS / f"{stamp}-{mode_name}.json"
    out.write_text(json.dumps(data, indent=1))
    if not args.out:
        shutil.copyfile(out, RESULTS / f"latest-{mode_name}.json")
        (RESULTS / f"latest-{mode_name}.txt").write_text(report + "\n")
    log(f"wrote {out}")


def git_head() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "django_rtcstream"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + (" (django_rtcstream/ modified)" if dirty else "")
    except OSError:
        return "?"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("aiortc", "aioice", "av", "django", "channels", "daphne", "django-rtcstream"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
