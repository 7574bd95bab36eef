"""The FastRTC session API and the HTTP hooks, end to end."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from django_rtcstream.client import (
    SignalingFailed,
    StreamClient,
    SyntheticVideoTrack,
    ToneAudioTrack,
    http_json,
)
from django_rtcstream.exceptions import InvalidInput, UnknownSession
from django_rtcstream.registry import get_stream
from tests.media import collect, drain, mean_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def test_set_input_from_a_sync_thread_reaches_the_handler(rtc_url):
    stream = get_stream("echo")
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 10)
        await asyncio.to_thread(stream.set_input, client.webrtc_id, 0.0)
        await asyncio.sleep(0.4)
        await drain(client.audio_frames)
        frames = await collect(client.audio_frames, 20)
        from tests.media import dominant_frequency

        assert dominant_frequency(frames)[1] < 0.01


async def test_set_input_validates_against_the_declared_inputs(rtc_url):
    stream = get_stream("gain")
    with pytest.raises(InvalidInput) as error:
        stream.set_input("whoever", 1.5)
    assert "level" in error.value.errors
    with pytest.raises(InvalidInput):
        stream.set_input("whoever", 0.5, 0.7)
    with pytest.raises(UnknownSession):
        await stream.aset_input("nobody", 0.5)


async def test_fetch_latest_output_and_output_stream(rtc_url):
    stream = get_stream("video-send")
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        latest = await stream.fetch_latest_output(client.webrtc_id, timeout=5)
        assert isinstance(latest.args[0], int) and latest.args[0] % 5 == 0
        await asyncio.sleep(0.5)
        newer = await stream.fetch_latest_output(client.webrtc_id)
        assert newer.args[0] > latest.args[0]
    with pytest.raises(UnknownSession):
        async for _ in stream.output_stream("never-existed"):
            pass


async def test_input_hook_validates_by_name_and_changes_the_handler(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack(marker_rows=240)) as client:
        await collect(client.video_frames, 3)
        with pytest.raises(SignalingFailed) as bad:
            await client.set_input(level=3)
        assert bad.value.status == 400 and "level" in bad.value.body["errors"]
        with pytest.raises(SignalingFailed) as unknown:
            await client.set_input(colour="red")
        assert unknown.value.body["errors"] == {"colour": ["Unknown input."]}
        reply = await client.set_input(level=0.5)
        assert reply == {"status": "success", "inputs": {"level": 0.5}}
        await asyncio.sleep(0.4)
        await drain(client.video_frames)
        assert abs(mean_brightness((await collect(client.video_frames, 3))[-1]) - 117) < 15


async def test_sse_output_hook_streams_outputs_until_the_session_ends(rtc_url):
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&token={client.token}"

        def read_events():
            events = []
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                for raw in response:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        return events
            return events

        events = await asyncio.to_thread(read_events)
    assert all(isinstance(e[0], int) for e in events) and events[1][0] > events[0][0]
    status, body = await http_json(f"{rtc_url}video-send/outputs?webrtc_id=nobody")
    assert status == 404 and body["meta"]["error"] == "unknown_connection"


def serial_order(answers, defaults, final):
    """An order in which applying the writes one at a time gives every answer, or None.

    ``answers`` holds ``(name, value, reported inputs)`` per write, each value written
    once. A write's answer must be the state before it with its own value set. The
    values a later answer (or the final state) reports are "referenced": of the writes
    that fit the current state, those nobody refers to go first, since applying one
    only changes what no one else saw.
    """
    state, remaining, order = dict(defaults), list(answers), []
    while remaining:
        fits = [a for a in remaining if a[2] == {**state, a[0]: a[1]}]
        if not fits:
            return None
        seen = [a[2] for a in remaining] + [final]

        def referenced(a, seen=seen):
            return sum(other is not a[2] and other[a[0]] == a[1] for other in seen)

        write = min(fits, key=referenced)
        remaining.remove(write)
        order.append(write)
        state = write[2]
    return order if state == final else None


def test_serial_order_detects_a_stale_answer():
    d = {"a": 0, "b": 0}
    good = [("a", 1, {"a": 1, "b": 0}), ("b", 2, {"a": 1, "b": 2}), ("a", 3, {"a": 3, "b": 2})]
    assert serial_order(good, d, {"a": 3, "b": 2}) == good
    assert serial_order(good[::-1], d, {"a": 3, "b": 2}) == good
    assert serial_order(good, d, {"a": 1, "b": 2}) is None
    stale = [("a", 1, {"a": 1, "b": 0}), ("b", 2, {"a": 0, "b": 2})]  # each missed the other
    assert serial_order(stale, d, {"a": 1, "b": 2}) is None


@pytest.mark.parametrize("route", ["local", "control channel"])
async def test_concurrent_input_hook_answers_follow_one_serial_order(rtc_url, route, monkeypatch):
    """Each answer reports the inputs as they stand just after its own update.

    "control channel": updates take the path they take from another worker (the
    control channel, and a reply channel back), as if the session were not here.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.test import override_settings

    from django_rtcstream.client import _http_json
    from django_rtcstream.sessions import bus
    from django_rtcstream.sessions.manager import manager
    from tests.settings import RTCSTREAM

    if route == "control channel":
        monkeypatch.setattr(bus, "_local", lambda webrtc_id: None)

    streams = {**RTCSTREAM["STREAMS"], "mixer": "tests.streams.mixer"}
    with override_settings(RTCSTREAM={**RTCSTREAM, "STREAMS": streams}):
        async with StreamClient(rtc_url, "mixer", video=SyntheticVideoTrack()) as client:
            await collect(client.video_frames, 2)
            writes = [("a" if i % 2 else "b", (i + 1) / 1000) for i in range(100)]
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=25) as pool:
                replies = await asyncio.gather(
                    *[
                        loop.run_in_executor(
                            pool,
                            _http_json,
                            client.url("input"),
                            {"webrtc_id": client.webrtc_id, "token": client.token, name: value},
                        )
                        for name, value in writes
                    ]
                )
            assert all(status == 200 for status, _ in replies), replies
            answers = [
                (name, value, reply["inputs"])
                for (name, value), (_, reply) in zip(writes, replies, strict=True)
            ]
            assert all(reported[name] == value for name, value, reported in answers)
            session = manager().sessions[client.webrtc_id]
            final = dict(zip(["a", "b"], session.inputs, strict=True))
            assert serial_order(answers, {"a": 0.5, "b": 0.5}, final) is not None, answers


def _post(url, body, headers=None):
    """POST ``body`` (JSON, or raw bytes) with extra headers; ``(status, JSON answer)``."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _sse(url, outputs=2):
    """``(status, [(event, data), ...])``: the first ``outputs`` outputs, or up to ``end``."""
    events, event = [], None
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
                    if event == "end" or sum(e == "output" for e, _ in events) >= outputs:
                        break
            return response.status, events
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_sse_ticket_opens_the_output_stream_once_without_the_token_in_the_url(rtc_url):
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        ticket_url = f"{rtc_url}video-send/outputs/ticket"
        status, reply = await asyncio.to_thread(
            _post, ticket_url, {"webrtc_id": client.webrtc_id, "token": client.token}
        )
        assert status == 200 and reply["expires_in"] == 30, reply
        ticket = reply["ticket"]
        assert isinstance(ticket, str) and len(ticket) >= 40 and client.token not in ticket
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&ticket={ticket}"
        status, events = await asyncio.to_thread(_sse, url)
        assert status == 200 and [e for e, _ in events] == ["output", "output"], events
        assert events[1][1][0] > events[0][1][0]
        status, body = await asyncio.to_thread(_sse, url)  # single use
        assert (status, body["meta"]["error"]) == (403, "permission_denied")
        # The token may come as a header instead; two requests racing with one ticket:
        # exactly one of them gets the stream.
        status, reply = await asyncio.to_thread(
            _post, ticket_url, {"webrtc_id": client.webrtc_id}, {"X-Session-Token": client.token}
        )
        assert status == 200
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&ticket={reply['ticket']}"
        results = await asyncio.gather(*[asyncio.to_thread(_sse, url, 1) for _ in range(2)])
        assert sorted(status for status, _ in results) == [200, 403], results
        # A ticket opens a stream that ends with the session, as the token's does.
        status, reply = await asyncio.to_thread(
            _post, ticket_url, {"webrtc_id": client.webrtc_id, "token": client.token}
        )
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&ticket={reply['ticket']}"
        reading = asyncio.ensure_future(asyncio.to_thread(_sse, url, 10**6))
        await asyncio.sleep(0.5)
    status, events = await asyncio.wait_for(reading, 10)
    assert status == 200 and events[-1] == ("end", {"webrtc_id": client.webrtc_id}), events[-3:]


async def test_sse_ticket_refusals(rtc_url, monkeypatch):
    from django_rtcstream.api import hooks

    ticket_url = f"{rtc_url}video-send/outputs/ticket"

    def outputs(client, ticket):
        return f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&ticket={ticket}"

    async with (
        StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as one,
        StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as two,
    ):
        refused = [
            ({"webrtc_id": one.webrtc_id}, 403),  # no token
            ({"webrtc_id": one.webrtc_id, "token": "forged"}, 403),
            ({"webrtc_id": one.webrtc_id, "token": two.token}, 403),  # another session's
            ({"webrtc_id": one.webrtc_id, "token": 3.14}, 403),  # not strings: no token
            ({"webrtc_id": one.webrtc_id, "token": [one.token]}, 403),
            ({"webrtc_id": one.webrtc_id, "token": {"a": 1}}, 403),
            ({"webrtc_id": ["x"], "token": one.token}, 400),
            ({"webrtc_id": 7, "token": one.token}, 400),
            ({"token": one.token}, 400),
            ({"webrtc_id": "nobody", "token": one.token}, 404),
            (b"[1, 2]", 400),
            (b"{not json", 400),
        ]
        for body, expected in refused:
            status, reply = await asyncio.to_thread(_post, ticket_url, body)
            assert status == expected and "ticket" not in reply, (body, status, reply)
            assert reply["status"] == "failed"
        status, reply = await http_json(
            f"{rtc_url}nowhere/outputs/ticket", {"webrtc_id": one.webrtc_id, "token": one.token}
        )
        assert status == 404
        status, _ = await http_json(ticket_url)  # GET
        assert status == 405

        # A ticket is bound to its session: another session's is refused, and used up.
        status, reply = await asyncio.to_thread(
            _post, ticket_url, {"webrtc_id": two.webrtc_id, "token": two.token}
        )
        assert status == 200
        status, body = await asyncio.to_thread(_sse, outputs(one, reply["ticket"]))
        assert (status, body["meta"]["error"]) == (403, "permission_denied"), body
        status, body = await asyncio.to_thread(_sse, outputs(two, reply["ticket"]))
        assert status == 403
        for ticket in ["", "guessed", one.token]:
            status, body = await asyncio.to_thread(_sse, outputs(one, ticket))
            assert status == 403, (ticket, body)

        # It expires.
        monkeypatch.setattr(hooks, "TICKET_SECONDS", 1)
        status, reply = await asyncio.to_thread(
            _post, ticket_url, {"webrtc_id": one.webrtc_id, "token": one.token}
        )
        assert status == 200 and reply["expires_in"] == 1
        await asyncio.sleep(1.5)
        status, body = await asyncio.to_thread(_sse, outputs(one, reply["ticket"]))
        assert status == 403, body

        # FastRTC's ?token= still works.
        status, events = await asyncio.to_thread(
            _sse, f"{rtc_url}video-send/outputs?webrtc_id={one.webrtc_id}&token={one.token}", 1
        )
        assert status == 200 and events[0][0] == "output"
