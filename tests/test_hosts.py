"""Workers on several hosts with their own addresses (network namespaces), clients on another.

``tests/netns.py`` builds two worker hosts and a client host on a bridge, a
Redis of the test's own on the bridge address and a socat forwarder there to
the machine's PostgreSQL (DATABASE_URL; a fresh database). One uvicorn worker
per host serves the test project on its host's address, with ICE on that
address; the clients (django-rtcstream's ``StreamClient``, the hooks, the
admin over HTTP) run in the client namespace and talk to whichever host the
test picks, as a load balancer in front would spread them. Shown:

- the input hook, the SSE output hook, the admin's terminate action and the
  concurrency limit work whichever host a request reaches;
- killing one host's workers, or cutting its link (its veth down), loses that
  host's sessions only: they are reaped within the lease, and the other host's
  sessions keep streaming with no gap over 200 ms;
- every namespace, link and process the test made is gone afterwards, also
  when the run fails.

Needs root, iproute2 (``ip netns``), redis-server, socat and PostgreSQL: skips
without them, fails under CI=true.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.netns import Hosts, namespaces, why_unusable

DATABASE_URL = os.environ.get("DATABASE_URL")
_missing = why_unusable() or (None if DATABASE_URL else "DATABASE_URL is not set")
if _missing:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must be able to run the several-hosts tests: {_missing}")
    pytest.skip(_missing, allow_module_level=True)

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack, http_json  # noqa: E402
from tests.test_broker_outage import SSEReader  # noqa: E402

pytestmark = [pytest.mark.media]

HEARTBEAT, LEASE = 0.5, 3.0
MAX_GAP = 0.200  # seconds between frames at a client of the host that stays up
ADMIN = ("boss", "hosts-test-password")


# -- the hosts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts():
    with Hosts(2) as made:
        made.build()
        made.start_redis()
        made.forward_postgres(DATABASE_URL)
        env = made.worker_env(
            {"RTCSTREAM_TEST_HEARTBEAT": str(HEARTBEAT), "RTCSTREAM_TEST_LEASE": str(LEASE)}
        )
        made.migrate(env, superuser=ADMIN)
        made.env = env  # type: ignore[attr-defined]
        for host in ("h1", "h2"):
            made.start_worker(host, env)
        try:
            yield made
        except BaseException:
            for worker in [w for ws in made.workers.values() for w in ws]:
                print(f"--- {worker['name']} ---\n{made.log(worker['name'])[-4000:]}")
            raise


def base(hosts: Hosts, host: str) -> str:
    return hosts.workers[host][-1]["base"]


def row(hosts: Hosts, webrtc_id: str) -> dict[str, Any] | None:
    import psycopg

    # Through the forwarder on the bridge: reachable from the root and the client namespace.
    with psycopg.connect(hosts.database_url, autocommit=True, connect_timeout=10) as db:
        found = db.execute(
            "SELECT state, close_reason, worker FROM django_rtcstream_streamsession "
            "WHERE webrtc_id = %s ORDER BY created_at DESC",
            (webrtc_id,),
        ).fetchone()
    return (
        None
        if found is None
        else dict(zip(("state", "close_reason", "worker"), found, strict=True))
    )


async def until(check, timeout: float, what: str, interval: float = 0.1):
    """``check()`` (blocking, on a thread) until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last})")


class Listener:
    """A client's received audio frames: arrival times and levels (in the client namespace)."""

    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.times: list[float] = []
        self.levels: list[float] = []
        self.task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        import numpy as np

        while True:
            frame = await self.client.audio_frames.get()
            samples = frame.to_ndarray().astype(np.float32) / 32768
            self.levels.append(float(np.sqrt(np.mean(samples**2))))
            self.times.append(time.monotonic())

    def max_gap(self, start: float, end: float) -> float:
        times = [t for t in self.times if start <= t <= end]
        assert len(times) >= 10, f"{len(times)} frames between {start} and {end}"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return max([times[0] - start, end - times[-1], *gaps])


async def open_session(
    hosts: Hosts, host: str, stream: str = "echo"
) -> tuple[StreamClient, Listener]:
    """(in the client namespace) A session on ``host``; once audio comes back."""
    client = StreamClient(
        base(hosts, host), stream, audio=ToneAudioTrack(), ice_host_addresses=[hosts.addresses["c"]]
    )
    await client.connect(timeout=30)
    listener = Listener(client)
    deadline = time.monotonic() + 20
    while len(listener.times) < 5:
        assert time.monotonic() < deadline, f"no audio back from {host}"
        await asyncio.sleep(0.05)
    return client, listener


def candidates(sdp: str) -> set[str]:
    return set(re.findall(r"a=candidate:\S+ \d \S+ \d+ (\S+) \d+ typ host", sdp))


# -- requests reach sessions whichever host they reach -------------------------------------


@pytest.mark.timeout(240)
async def test_inputs_outputs_admin_terminate_and_the_limit_work_whichever_host_a_request_reaches(
    hosts,
):
    ns = hosts.client_loop()
    h1, h2 = base(hosts, "h1"), base(hosts, "h2")

    async def on_client_host() -> dict[str, Any]:
        out: dict[str, Any] = {}
        client, listener = await open_session(hosts, "h1", "echo-report")
        limited, _ = await open_session(hosts, "h2", "limited")
        sse = None
        try:
            # ICE ran over the hosts' own addresses, not loopback.
            out["server_candidates"] = candidates(client.pc.remoteDescription.sdp)
            out["client_candidates"] = candidates(client.pc.localDescription.sdp)
            # The input hook on host 2 reaches the handler on host 1; its outputs (on the
            # SSE hook of host 2) carry the new gain, and the echo goes quiet.
            sse = SSEReader(
                f"{h2}echo-report/outputs?webrtc_id={client.webrtc_id}&token={client.token}"
            )
            out["first_output"] = await sse.next_output(15)
            out["input"] = await http_json(
                f"{h2}echo-report/input",
                {"webrtc_id": client.webrtc_id, "token": client.token, "gain": 0.0},
            )
            deadline = time.monotonic() + 15
            while True:
                output = await sse.next_output(max(0.1, deadline - time.monotonic()))
                if output[1] == 0.0:
                    out["output_after_input"] = output
                    break
            changed = time.monotonic()
            await asyncio.sleep(0.5)
            out["levels_after"] = [
                v
                for t, v in zip(listener.times, listener.levels, strict=False)
                if t > changed + 0.3
            ]
            out["levels_before"] = listener.levels[:20]
            # The limit (1) holds for host 1 while host 2 has the session.
            refused = StreamClient(
                h1, "limited", audio=ToneAudioTrack(), ice_host_addresses=[hosts.addresses["c"]]
            )
            try:
                await refused.connect(timeout=20)
                out["limit"] = "admitted"
            except SignalingFailed as exc:
                out["limit"] = (exc.status, exc.code)
            finally:
                await refused.close()
            out["limited_id"] = limited.webrtc_id
            # The admin's terminate action, on host 1, for the session on host 2.
            out["admin"] = await admin_terminate(h1, hosts, limited.webrtc_id)
            return out
        finally:
            if sse is not None:
                sse.close()
            listener.task.cancel()
            await client.close()
            await limited.close()

    out = await ns.run(on_client_host(), timeout=200)
    assert out["server_candidates"] == {hosts.addresses["h1"]}, out["server_candidates"]
    assert out["client_candidates"] == {hosts.addresses["c"]}, out["client_candidates"]
    assert out["input"][0] == 200, out["input"]
    assert out["output_after_input"][1] == 0.0
    assert max(out["levels_before"]) > 0.1, out["levels_before"]
    assert out["levels_after"] and max(out["levels_after"]) < 0.01, out["levels_after"][:10]
    assert out["limit"] == (429, "concurrency_limit_reached"), out["limit"]
    assert out["admin"] == "Terminated: 1; already finished: 0.", out["admin"]
    closed = await until(
        lambda: (r := row(hosts, out["limited_id"])) and r["state"] != "connected" and r,
        10,
        "the terminated session's record",
    )
    assert (closed["state"], closed["close_reason"], closed["worker"]) == (
        "closed",
        "terminated_by_admin",
        "h2-w0",
    )


async def admin_terminate(base_rtc: str, hosts: Hosts, webrtc_id: str) -> str:
    """Log into the admin at ``base_rtc``'s host and run "terminate" on the session; the message."""
    import html

    import aiohttp

    root = base_rtc.rsplit("/rtc/", 1)[0]
    pk = await asyncio.to_thread(lambda: _pk(hosts, webrtc_id))
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        login = f"{root}/admin/login/?next=/admin/"
        async with http.get(login) as response:
            page = await response.text()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"csrfmiddlewaretoken": token, "username": ADMIN[0], "password": ADMIN[1]}
        async with http.post(login, data=form, headers={"Referer": login}) as response:
            assert response.status == 200 and "/admin/login/" not in str(response.url), response.url
        changelist = f"{root}/admin/django_rtcstream/streamsession/"
        async with http.get(changelist) as response:
            page = await response.text()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {
            "csrfmiddlewaretoken": token,
            "action": "terminate_sessions",
            "_selected_action": str(pk),
            "index": "0",
        }
        async with http.post(changelist, data=form, headers={"Referer": changelist}) as response:
            page = await response.text()
    found = re.search(r"Terminated: \d+; already finished: \d+\.", html.unescape(page))
    return found.group(0) if found else page[-2000:]


def _pk(hosts: Hosts, webrtc_id: str) -> int:
    import psycopg

    with psycopg.connect(hosts.database_url, autocommit=True, connect_timeout=10) as db:
        return db.execute(
            "SELECT id FROM django_rtcstream_streamsession WHERE webrtc_id = %s AND state = 'connected'",
            (webrtc_id,),
        ).fetchone()[0]


# -- one host lost ------------------------------------------------------------------------------


async def lose_a_host(hosts: Hosts, lost: str, kept: str, fault) -> None:
    """Two sessions on each host; ``fault()`` takes ``lost`` away. Only its sessions end
    (reaped within the lease, as ``worker_lost``); ``kept``'s stream on without a gap."""
    ns = hosts.client_loop()
    sessions: dict[str, list[tuple[StreamClient, Listener]]] = {lost: [], kept: []}

    async def open_all() -> None:
        for host in (lost, kept, lost, kept):
            sessions[host].append(await open_session(hosts, host))

    async def close_all() -> None:
        for pairs in sessions.values():
            for client, listener in pairs:
                listener.task.cancel()
                await client.close()

    await ns.run(open_all(), timeout=120)
    try:
        for host, pairs in sessions.items():
            for client, _ in pairs:
                assert row(hosts, client.webrtc_id)["worker"].startswith(host)
        await asyncio.sleep(1.0)
        before = time.monotonic()
        baseline = [listener.max_gap(before - 1.0, before) for _, listener in sessions[kept]]
        fault()
        faulted = time.monotonic()

        def all_reaped():
            rows = [row(hosts, c.webrtc_id) for c, _ in sessions[lost]]
            return all(r["state"] != "connected" for r in rows) and rows

        rows = await until(all_reaped, LEASE + HEARTBEAT + 10, f"reaping of {lost}'s sessions")
        reaped_after = time.monotonic() - faulted
        await asyncio.sleep(1.0)
        end = time.monotonic()
        gaps = [listener.max_gap(faulted - 0.5, end) for _, listener in sessions[kept]]
        kept_rows = [row(hosts, c.webrtc_id) for c, _ in sessions[kept]]
        print(
            f"{lost} lost: reaped after {reaped_after:.2f} s (lease {LEASE} s); {kept}'s largest "
            f"gaps {[round(g, 3) for g in gaps]} s (before the fault {[round(g, 3) for g in baseline]})"
        )
        assert all((r["state"], r["close_reason"]) == ("failed", "worker_lost") for r in rows), rows
        # Not before the lease (less the beat not yet sent), and within it plus a beat and margin.
        assert LEASE - HEARTBEAT - 0.5 <= reaped_after <= LEASE + HEARTBEAT + 3, reaped_after
        assert all(r["state"] == "connected" for r in kept_rows), kept_rows
        assert max(gaps) <= MAX_GAP, gaps
    finally:
        await ns.run(close_all(), timeout=60)


@pytest.mark.timeout(240)
async def test_killing_one_hosts_workers_loses_only_its_sessions_and_the_other_streams_on(hosts):
    try:
        await lose_a_host(hosts, "h2", "h1", lambda: hosts.kill_workers("h2"))
    finally:
        await asyncio.to_thread(hosts.start_worker, "h2", hosts.env)  # for the next test


@pytest.mark.timeout(240)
async def test_cutting_one_hosts_link_loses_only_its_sessions_and_the_other_streams_on(hosts):
    try:
        await lose_a_host(hosts, "h1", "h2", lambda: hosts.cut("h1"))
    finally:
        hosts.restore("h1")


# -- cleanup --------------------------------------------------------------------------------------


def test_a_failing_run_leaves_no_namespace_link_or_process_behind():
    made = Hosts(2)
    with pytest.raises(RuntimeError, match="deliberate"), made:
        made.build()
        made.start_redis()
        made.spawn("sleeper", ["sleep", "600"], made.ns("h1"))
        made.client_loop()
        assert len(made.leftovers()) >= 6, made.leftovers()  # 3 namespaces, links, processes
        raise RuntimeError("deliberate failure in the middle of a run")
    assert made.leftovers() == []
    assert not [n for n in namespaces() if n.startswith(made.base_name)]


def test_namespaces_of_a_killed_test_process_are_removed_with_their_processes_by_the_next_run():
    script = (
        "import os, signal, sys; sys.path.insert(0, os.getcwd()); from tests.netns import Hosts; "
        "h = Hosts(1).build(); h.spawn('sleeper', ['sleep', '600'], h.ns('h1')); "
        "print(h.base_name, h.bridge, h.processes[0][1].pid, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    base_name, bridge, sleeper = done.stdout.split()
    assert [n for n in namespaces() if n.startswith(base_name)]  # left behind by the kill
    with Hosts(1) as next_run:
        next_run.build()  # sweeps what the dead process left
        assert not [n for n in namespaces() if n.startswith(base_name)]
        assert (
            bridge
            not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        )
        assert not os.path.exists(f"/proc/{sleeper}") or _zombie(int(sleeper))
    assert next_run.leftovers() == []


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True
