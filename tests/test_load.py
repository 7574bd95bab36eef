"""Bounded load (issue 13): the limits and hooks hold when many clients come at once.

Every request here is truly in flight at the same time (asyncio streams in the
server's own loop, not a few executor threads), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import resource
import time
from collections import Counter

import pytest
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack
from django_rtcstream.models import ACTIVE_STATES, StreamSession
from django_rtcstream.sessions.manager import manager
from tests import rawhttp
from tests.media import collect, drain, mean_brightness
from tests.settings import RTCSTREAM

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(90)]

LIMIT, OFFERS = 10, 50


async def wait_for(predicate, timeout: float, what: str):
    async def poll():
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def audio_offer() -> tuple[object, str]:
    """One real aiortc offer (audio, send-receive, a data channel), reused for every id."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("text")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def open_server_pcs(ours) -> list:
    from aiortc import RTCPeerConnection

    return [
        pc
        for pc in gc.get_objects()
        if isinstance(pc, RTCPeerConnection) and pc is not ours and pc.connectionState != "closed"
    ]


async def test_fifty_simultaneous_offers_admit_exactly_the_limit_and_leave_nothing_behind(rtc_url):
    streams = {**RTCSTREAM["STREAMS"], "ten": "tests.streams.limited_ten"}
    with override_settings(RTCSTREAM={**RTCSTREAM, "STREAMS": streams}):
        client_pc, sdp = await audio_offer()
        try:
            url = f"{rtc_url}ten/webrtc/offer"

            async def burst(prefix: str, n: int) -> list[rawhttp.Response]:
                return await rawhttp.simultaneous(
                    [
                        (
                            url,
                            "POST",
                            {"type": "offer", "sdp": sdp, "webrtc_id": f"{prefix}-{i}"},
                            None,
                        )
                        for i in range(n)
                    ]
                )

            async def close_all(admitted: list[dict]) -> None:
                closes = await rawhttp.simultaneous(
                    [
                        (
                            url,
                            "POST",
                            {"type": "close", "webrtc_id": a["webrtc_id"], "token": a["token"]},
                            None,
                        )
                        for a in admitted
                    ]
                )
                assert [c.status for c in closes] == [200] * len(admitted), [c.text for c in closes]

            started = time.monotonic()
            replies = await burst("load", OFFERS)
            statuses = Counter(r.status for r in replies)
            assert statuses == {200: LIMIT, 429: OFFERS - LIMIT}, (
                statuses,
                [r.text[:200] for r in replies if r.status not in (200, 429)],
            )
            for r in replies:
                if r.status == 429:
                    meta = r.json()["meta"]
                    assert (r.json()["status"], meta["error"], meta["limit"]) == (
                        "failed",
                        "concurrency_limit_reached",
                        LIMIT,
                    ), r.text
            admitted = [r.json() for r in replies if r.status == 200]
            assert all(a["type"] == "answer" and a["token"] for a in admitted)
            ids = {f"load-{i}" for i in range(OFFERS)}
            assert set(manager().sessions) & ids == {a["webrtc_id"] for a in admitted}
            assert (
                await StreamSession.objects.filter(stream="ten", state__in=ACTIVE_STATES).acount()
                == LIMIT
            )

            await close_all(admitted)
            await wait_for(
                lambda: not set(manager().sessions) & ids,
                15,
                "the admitted sessions to leave the worker",
            )

            async def no_live_rows():
                return not await StreamSession.objects.filter(
                    stream="ten", state__in=ACTIVE_STATES
                ).aexists()

            await wait_for(no_live_rows, 10, "no live rows")
            await wait_for(
                lambda: not open_server_pcs(client_pc), 10, "every server peer connection to close"
            )

            # Nothing was left holding a slot: the next burst gets the whole limit again.
            again = await burst("again", LIMIT + 2)
            assert Counter(r.status for r in again) == {200: LIMIT, 429: 2}
            await close_all([r.json() for r in again if r.status == 200])
            await wait_for(lambda: not manager().sessions, 15, "the second burst to leave")
            await wait_for(no_live_rows, 10, "no live rows after the second burst")
            print(f"offers: {time.monotonic() - started:.1f} s")
        finally:
            await client_pc.close()


SUBSCRIBERS = 100
WINDOW = 12  # outputs every subscriber must see before the session closes (2 s at 6/s)


async def test_a_hundred_sse_subscribers_each_get_every_event_then_end(rtc_url):
    """``video-send`` publishes ``AdditionalOutputs(n, mean)`` on every 5th handler
    call: consecutive multiples of 5, so a lost event shows as a gap."""
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}"
        opened = await asyncio.gather(
            *[rawhttp.open_sse(url, {"X-Session-Token": client.token}) for _ in range(SUBSCRIBERS)]
        )
        assert all(isinstance(s, rawhttp.SSE) for s in opened), [
            s.status for s in opened if not isinstance(s, rawhttp.SSE)
        ]
        got: list[list[tuple[int, int]]] = [[] for _ in opened]
        ends: list[object] = [None] * len(opened)

        async def read(i: int, sse: rawhttp.SSE) -> None:
            try:
                async for event, data, event_id in sse.events():
                    if event == "output":
                        got[i].append((int(event_id), data[0]))
                    elif event == "end":
                        ends[i] = data
                        return
            finally:
                sse.close()

        readers = [asyncio.ensure_future(read(i, s)) for i, s in enumerate(opened)]
        try:
            await wait_for(
                lambda: all(len(g) >= WINDOW for g in got),
                30,
                f"{WINDOW} outputs on every subscriber",
            )
            await client.hang_up()
            await asyncio.wait_for(asyncio.gather(*readers), 15)
        finally:
            for r in readers:
                r.cancel()
    assert ends == [{"webrtc_id": client.webrtc_id}] * SUBSCRIBERS
    for events in got:
        ids = [i for i, _ in events]
        values = [v for _, v in events]
        assert ids == list(range(1, len(ids) + 1)), ids
        assert all(b - a == 5 for a, b in itertools.pairwise(values)), values  # no gap
    # They all ended on the same last event, and share every event since the latest start.
    lasts = {events[-1][1] for events in got}
    assert len(lasts) == 1, lasts
    start = max(events[0][1] for events in got)
    window = list(range(start, lasts.pop() + 1, 5))
    assert len(window) >= WINDOW - 2, window
    for events in got:
        assert [v for _, v in events if v >= start] == window


# Four keep-alive connections at a time keep the hook saturated (about 10 ms a post
# here). Sixteen at once are slower, not faster: each holds a Django request thread,
# and the threads' contention for the interpreter lock made the session drop 10-25 %
# of its frames (latest frame wins) on a busy 2-core machine, against ~1 % with four.
POSTS, WORKERS = 2000, 4
POSTS_WITHIN = 30.0  # seconds, on a machine that gives this process the CPU it asks for


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def posts_bound() -> float:
    """``POSTS_WITHIN``, stretched by how oversubscribed the machine is right now.

    On a shared 2-core machine other people's suites can keep 8 tasks runnable: then
    this process gets a quarter of the time it asks for, and wall-clock bounds mean
    nothing. The stretch is at most 1.5; the bound is twice that (at most 90 s).
    """
    cpus, load = os.cpu_count() or 1, os.getloadavg()[0]
    # A guard against a hang, not a speed figure: in CI's full run this process (server
    # and client both) is CPU-bound, and 2,000 posts took 33.7 s with 35 s of its own CPU.
    # The rate is the benchmark's business; this test proves every post is answered
    # right and the session keeps its frames.
    return 2 * POSTS_WITHIN * min(1.5, max(1.0, load / cpus))


async def test_two_thousand_input_posts_while_a_session_streams_video(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack(marker_rows=240)) as client:
        await collect(client.video_frames, 5)
        url = client.url("input")
        values = [(i + 1) / 5000 for i in range(POSTS - 1)]  # 0.0002 .. 0.3998, all distinct
        final = 0.5
        sent0, received0 = client.video.sent, client.received["video"]
        started, cpu0 = time.monotonic(), cpu_seconds()
        results = await asyncio.wait_for(
            rawhttp.input_posts(url, client.webrtc_id, client.token, values, WORKERS), 40
        )
        # The last write, after every other has been answered.
        reply = await rawhttp.request(
            url,
            "POST",
            {"webrtc_id": client.webrtc_id, "level": final},
            {"X-Session-Token": client.token},
        )
        elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu0
        bound = posts_bound()
        sent, received = client.video.sent - sent0, client.received["video"] - received0

        statuses = Counter(status for _, status, _ in results)
        assert not [s for s in statuses if s >= 500], statuses
        assert set(statuses) <= {200, 429}, statuses
        assert statuses[200] > 0 and len(results) == POSTS - 1
        assert all(inputs == {"level": value} for value, status, inputs in results if status == 200)
        assert (reply.status, reply.json()["inputs"]) == (200, {"level": final}), reply.text
        assert elapsed <= bound, (
            f"{POSTS} input posts took {elapsed:.1f} s (bound {bound:.0f} s, "
            f"load {os.getloadavg()[0]:.1f}; this process used {cpu:.1f} s "
            "of CPU, the session's video included)"
        )
        # The session kept streaming: at least 90 % of the frames sent came back.
        assert sent > 0 and received >= 0.9 * sent, (received, sent, elapsed)
        assert manager().sessions[client.webrtc_id].inputs == [final]

        # The handler runs with the last write: 235 * 0.5 ~ 117, within the codec's error.
        async def at_final_level():
            await drain(client.video_frames)
            frames = await collect(client.video_frames, 3, timeout=5)
            return all(abs(mean_brightness(f) - 235 * final) < 15 for f in frames)

        await wait_for(at_final_level, 10, "frames at the final level")
        print(
            f"inputs: {POSTS} posts in {elapsed:.1f} s (bound {bound:.0f}, cpu {cpu:.1f} s), "
            f"{statuses}, frames {received}/{sent}"
        )

    async def recorded():
        record = await StreamSession.objects.filter(webrtc_id=client.webrtc_id).afirst()
        return record if record is not None and not record.is_live else None

    record = await wait_for(recorded, 10, "the session's record to close")
    assert record.inputs == [final]
