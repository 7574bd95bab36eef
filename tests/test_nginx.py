"""Sessions through a real nginx in front of two workers, with the guide's own configuration.

The test renders ``deploy/nginx/rtcstream.conf.template`` (the file
docs/deployment.md shows) as envsubst would, wraps it in a minimal top-level
configuration of its own (logs, pid and temporary files in a temporary directory),
and runs Debian's nginx on a free loopback port as an unprivileged process, in
front of two uvicorn workers on Redis and PostgreSQL (REDIS_URL, DATABASE_URL).
A session then goes through nginx only: config, offer over HTTP or WebSocket
signaling, input hook, SSE outputs, close.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, http_json
from tests.conftest import free_port
from tests.media import collect
from tests.workers import fresh_database, rows, start_worker, stop_worker

REDIS_URL = os.environ.get("REDIS_URL")
DATABASE_URL = os.environ.get("DATABASE_URL")
ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "rtcstream.conf.template"
GUIDE = ROOT / "docs" / "deployment.md"
PLACEHOLDERS = ("LISTEN", "SERVER_NAME", "STATIC_ROOT", "WORKERS")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


def test_the_guide_shows_the_configuration_the_test_uses():
    guide = GUIDE.read_text()
    assert TEMPLATE.read_text() in guide
    for unit in sorted((ROOT / "deploy" / "systemd").iterdir()):
        assert unit.read_text() in guide, unit.name
    assert "docs/deployment.md" in (ROOT / "README.md").read_text()


def render(values: dict[str, str], template: str | None = None) -> str:
    """What ``envsubst '${LISTEN} ${SERVER_NAME} ${STATIC_ROOT} ${WORKERS}'`` makes of it."""
    text = TEMPLATE.read_text() if template is None else template
    for name in PLACEHOLDERS:
        assert "${" + name + "}" in text, name
        text = text.replace("${" + name + "}", values[name])
    return text


MAIN = """\
worker_processes 1;
error_log stderr notice;
events {{ worker_connections 512; }}
http {{
    types {{ text/plain txt; application/javascript js; }}
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {tmp}/access.log upstreams;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/rtcstream.conf;
}}
"""


class Nginx:
    """A running nginx: its URL, its access log, and its stderr so far."""

    def __init__(self, process: subprocess.Popen[str], url: str, tmp: str) -> None:
        self.process, self.url, self.tmp = process, url, tmp
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def access_log(self) -> list[list[str]]:
        with open(os.path.join(self.tmp, "access.log")) as log:
            return [line.split() for line in log]

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(text in line for line in self.lines):
                if self.process.poll() is not None:
                    raise RuntimeError("nginx exited:\n" + "\n".join(self.lines))
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"nginx did not say {text!r}:\n" + "\n".join(self.lines))


def start_nginx(workers: list[str], template: str | None = None) -> Nginx:
    """nginx on a free loopback port in front of ``workers`` (``host:port``), unprivileged."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must install nginx (apt-get install nginx) for this test")
        pytest.skip("nginx (Debian package nginx) is not installed")
    tmp = tempfile.mkdtemp(prefix="rtcstream-nginx-")
    static = os.path.join(tmp, "static")
    os.makedirs(os.path.join(static, "django_rtcstream"))
    shutil.copy(
        ROOT / "django_rtcstream" / "static" / "django_rtcstream" / "rtcstream.js",
        os.path.join(static, "django_rtcstream", "rtcstream.js"),
    )
    port = free_port()
    site = render(
        {
            "LISTEN": f"127.0.0.1:{port}",
            "SERVER_NAME": "127.0.0.1",
            "STATIC_ROOT": static,
            "WORKERS": " ".join(f"server {w};" for w in workers),
        },
        template,
    )
    pathlib.Path(tmp, "rtcstream.conf").write_text(site)
    pathlib.Path(tmp, "nginx.conf").write_text(MAIN.format(tmp=tmp))
    # Unprivileged: as the test's own user, or as nobody when the test runs as root
    # (nginx started as root would keep a root master process).
    as_user: dict[str, int] = {}
    if os.geteuid() == 0:
        as_user = {"user": 65534, "group": 65534}
        for directory, _, files in os.walk(tmp):
            os.chown(directory, 65534, 65534)
            for name in files:
                os.chown(os.path.join(directory, name), 65534, 65534)
    process = subprocess.Popen(
        [
            binary,
            "-e",
            "stderr",  # not /var/log/nginx/error.log, before the configuration is read
            "-p",
            tmp,
            "-c",
            os.path.join(tmp, "nginx.conf"),
            "-g",
            f"daemon off; pid {tmp}/nginx.pid;",
        ],
        stderr=subprocess.PIPE,
        text=True,
        **as_user,  # type: ignore[arg-type]
    )
    server = Nginx(process, f"http://127.0.0.1:{port}", tmp)

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with server.changed:
                server.lines.append(line.rstrip("\n"))
                server.changed.notify_all()

    threading.Thread(target=read, name="nginx-log", daemon=True).start()
    try:
        # The master binds the listening socket before it starts its worker.
        server.wait_for("start worker process", 15)
    except BaseException:
        stop_nginx(server)
        raise
    return server


def stop_nginx(server: Nginx) -> None:
    if server.process.poll() is None:
        server.process.terminate()  # fast shutdown: open SSE and WebSocket connections close
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    shutil.rmtree(server.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def workers():
    """Two uvicorn workers on a fresh PostgreSQL database and the Redis channel layer."""
    if not (REDIS_URL and DATABASE_URL):
        if os.environ.get("CI"):
            raise RuntimeError("CI must set REDIS_URL and DATABASE_URL for the nginx test")
        pytest.skip("REDIS_URL and DATABASE_URL are not set")
    # The channel layer as docs/deployment.md configures it (no redis-py socket timeout).
    with fresh_database("rtcstream_nginx", RTCSTREAM_TEST_REDIS_NO_TIMEOUT="1") as (name, env):
        processes = []
        try:
            urls = {}
            for worker in ("A", "B"):
                url, process = start_worker(env, worker)
                processes.append(process)
                urls[worker] = urlsplit(url).netloc
            yield {"name": name, "workers": urls}
        finally:
            for process in processes:
                stop_worker(process)


@pytest.fixture
def nginx(workers):
    server = start_nginx(list(workers["workers"].values()))
    try:
        yield server
    finally:
        stop_nginx(server)


class EventStream:
    """An SSE response read line by line in a thread; events land in an asyncio queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.response = None
        threading.Thread(target=self._read, name="sse", daemon=True).start()

    def _put(self, event: tuple[str, str]) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def _read(self) -> None:
        kind, data = "message", []
        try:
            self.response = urllib.request.urlopen(self.url, timeout=30)
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self._put(("comment", line[1:].strip()))
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    self._put((kind, "\n".join(data)))
                    kind, data = "message", []
        except Exception as exc:  # the test sees it as an event
            self._put(("error", repr(exc)))
        self._put(("closed", ""))

    async def next(self, timeout: float) -> tuple[str, str]:
        return await asyncio.wait_for(self.events.get(), timeout)

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


def owner(workers, webrtc_id):
    found = rows(
        workers["name"],
        "SELECT worker, state FROM django_rtcstream_streamsession WHERE webrtc_id = %s",
        webrtc_id,
    )
    return found[0] if found else None


async def run_session(base: str, signaling: str, workers) -> dict:
    """One session through nginx; returns what the test asserts on."""
    seen: dict = {"delays": [], "outputs": []}
    async with StreamClient(
        base,
        "report",
        video=SyntheticVideoTrack(),
        signaling=signaling,
        ice_host_addresses=["127.0.0.1"],
    ) as client:
        await collect(client.video_frames, 3)  # media flows both ways
        seen["webrtc_id"] = client.webrtc_id
        seen["websocket_url"] = client.config["urls"]["websocket"]
        status, reply = await http_json(
            f"{base}report/outputs/ticket", {"webrtc_id": client.webrtc_id, "token": client.token}
        )
        assert status == 200, reply
        sse = EventStream(
            f"{base}report/outputs?webrtc_id={client.webrtc_id}&ticket={reply['ticket']}"
        )
        try:
            # The subscription is in place once the first comment is through.
            assert await sse.next(10) == ("comment", "connected")
            for level in (10, 20, 30):
                started = time.monotonic()
                await client.set_input(level=level)
                # Each output must come through before the next input is even sent: a
                # proxy that held events back until its buffer filled never delivers it.
                while True:
                    kind, data = await sse.next(10)
                    assert kind == "output", (kind, data)
                    seen["outputs"].append(json.loads(data))
                    if json.loads(data) == [level]:
                        break
                seen["delays"].append(time.monotonic() - started)
            seen["owner"] = await asyncio.to_thread(owner, workers, client.webrtc_id)
            await client.hang_up()  # {"type": "close"} through nginx, or the socket closes
            kind, data = await sse.next(10)
            assert kind == "end" and json.loads(data)["webrtc_id"] == client.webrtc_id
        finally:
            sse.close()
    return seen


@pytest.mark.media
@pytest.mark.parametrize("signaling", ["http", "websocket"])
async def test_a_session_runs_through_nginx_in_front_of_two_workers(nginx, workers, signaling):
    base = f"{nginx.url}/rtc/"

    def static() -> tuple[int, bytes]:
        with urllib.request.urlopen(f"{nginx.url}/static/django_rtcstream/rtcstream.js") as r:
            return r.status, r.read()

    status, body = await asyncio.to_thread(static)
    assert status == 200 and b"RTCPeerConnection" in body
    seen = await run_session(base, signaling, workers)
    # The app builds its WebSocket URL from the Host nginx passes on, port included.
    assert seen["websocket_url"] == f"ws://{urlsplit(nginx.url).netloc}/ws/rtc/report/"
    assert seen["owner"][1] == "connected"
    # The first output (the initial level) may or may not precede the subscription.
    assert [o for o in seen["outputs"] if o != [0]] == [[10], [20], [30]]
    assert all(delay < 5 for delay in seen["delays"]), seen["delays"]
    # Sticky-free: nginx handed this session's requests to both workers.
    log = nginx.access_log()
    served = {line[3] for line in log if line[1].startswith("/rtc/report/")}
    assert served == set(workers["workers"].values()), log
    assert {line[2] for line in log if line[1] == "/rtc/report/input"} == {"200"}
    if signaling == "websocket":
        assert any(line[1] == "/ws/rtc/report/" and line[2] == "101" for line in log), log
    deadline = time.monotonic() + 10
    while (state := (await asyncio.to_thread(owner, workers, seen["webrtc_id"]))[1]) not in (
        "closed",
        "failed",
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert state == "closed"
