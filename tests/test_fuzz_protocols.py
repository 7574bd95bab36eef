"""Hypothesis-driven fuzzing of the wire (issue 13), beside a live echo session.

What is fuzzed: signaling JSON (offers, candidates, close: over HTTP and the
signaling WebSocket), SDP (random text, mangled real offers, odd m-lines,
offers near and over ``MAX_SIGNALING_BYTES``), input hook values for a stream
with every kind of input, and the three WebSocket protocols (signaling,
FastRTC's audio socket, Twilio's Media Streams) with random JSON, binary and
oversized frames and events out of order.

What must hold: no 5xx, no WebSocket closed with 1011 (or dropped), refusals
as failure bodies / ``failed`` / ``error`` messages or 4xxx closes, every
socket still answering a ping after its fuzz, no ERROR log or traceback, the
echo undisturbed (>= 90 % of its frames, no gap over 250 ms) and nothing left
live afterwards.

The examples are drawn by Hypothesis, derandomized (the same every run), before
the echo starts, then replayed against the server: generation is pure Python,
and in the server's process and loop it would be what the echo measures.
``FUZZ_EXAMPLES`` scales every test's count (default 1.0).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import random
import time
from typing import Any

import pytest
import websockets

from django_rtcstream import Checkbox, Dropdown, Number, Slider, Stream, Textbox
from django_rtcstream.client import StreamClient, http_json
from django_rtcstream.testing import override_streams
from tests.fuzzing import assert_nothing_left, live_echo
from tests.test_bad_input import no_server_errors, post_raw  # noqa: F401  (fixture)
from tests.test_offer_fuzz import base_offers, mangle, many_sections

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    Phase,
    given,
    settings,
    strategies as st,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1.0"))
MAX = 262144  # MAX_SIGNALING_BYTES's default (the test settings keep it)
WS_MAX_SIZE = 16 * 2**20  # uvicorn's ws_max_size: larger frames are its 1009, not ours
REPLY_TIMEOUT = 10.0
MIN_WINDOW = 3.0  # seconds the echo is watched at least: shorter, its share means little


def draw(strategy: st.SearchStrategy, n: int) -> list[Any]:
    """``n`` examples of ``strategy``, the same ones every run."""
    out: list[Any] = []

    @settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max(1, round(n * SCALE)),
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        out.append(example)

    collect()
    return out  # (live_echo freezes them and Hypothesis's state out of the collector's way)


# -- strategies ----------------------------------------------------------------------

ODD_NUMBERS = [
    0,
    -1,
    2**31,
    2**63,
    -(2**63),
    10**30,
    10**309,
    -(10**309),
    1e308,
    -1e-308,
    math.inf,
    -math.inf,
    math.nan,
    0.5,
    1.0000001,
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(ODD_NUMBERS),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
ids = st.one_of(
    st.from_regex(r"fuzz-[A-Za-z0-9_-]{1,20}", fullmatch=True),
    st.text(max_size=70),
    st.just(""),
    json_values,
)
CANDIDATE = "candidate:1 1 UDP 2130706431 127.0.0.1 {port} typ host"


@st.composite
def candidate_strings(draw_: Any) -> str:
    words = CANDIDATE.format(port=draw_(st.integers(0, 70000))).split(" ")
    for _ in range(draw_(st.integers(0, 3))):
        i = draw_(st.integers(0, len(words) - 1))
        words[i] = draw_(
            st.sampled_from(
                [
                    "",
                    "x",
                    "-1",
                    "999999999999",
                    "typ",
                    "raddr",
                    "\x00",
                    "::1",
                    "tcp",
                    "srflx",
                    "1.2.3.4.5",
                ]
            )
        )
    return " ".join(words)


candidates = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {"candidate": st.one_of(candidate_strings(), st.text(max_size=40))},
        optional={
            "sdpMid": st.one_of(st.none(), st.text(max_size=3), st.integers()),
            "sdpMLineIndex": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
        },
    ),
)

M_LINES = [
    "m=audio 9 UDP/TLS/RTP/SAVPF",
    "m=video 0 RTP/AVP 96",
    "m=text 9 RTP/AVP 0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=audio 9 RTP/AVP 0 8 101",
    "m=video 9 UDP/TLS/RTP/SAVPF " + " ".join(str(p) for p in range(96, 128)),
    "m=audio -1 UDP/TLS/RTP/SAVPF 111",
    "m=",
    "m=audio 9",
]


def sdp_strategy(bases: list[str]) -> st.SearchStrategy:
    """Random text, mangled real offers, odd m-lines, and offers near and over the limit."""
    base = st.sampled_from(bases)
    mangled = st.builds(
        lambda sdp, seed: mangle(sdp, random.Random(seed)), base, st.integers(0, 2**32)
    )

    odd_m = st.builds(
        odd_m_lines, base, st.sampled_from(M_LINES), st.integers(0, 200), st.sampled_from(REPEATS)
    )
    huge = st.builds(padded, base, st.sampled_from(SIZES))
    return st.one_of(st.text(max_size=300), mangled, odd_m, huge)


REPEATS = [1, 2, 50, 400]
SIZES = [MAX // 2, MAX - 4096, MAX - 300, MAX + 1, 2 * MAX, 8 * MAX]


def odd_m_lines(sdp: str, line: str, where: int, repeat: int) -> str:
    """An offer with ``repeat`` copies of an odd m-line (and a mid) spliced in."""
    lines = sdp.strip().split("\r\n")
    lines[where % len(lines) : where % len(lines)] = [line, "a=mid:9"] * repeat
    return "\r\n".join(lines) + "\r\n"


def padded(sdp: str, size: int) -> str:
    """A real offer grown to about ``size`` bytes with attribute lines of 1 kB."""
    line = "a=x-fuzz:" + "z" * 990 + "\r\n"
    return sdp + line * max(0, (size - len(sdp)) // len(line))


def signaling_messages(bases: list[str]) -> st.SearchStrategy:
    sdp = st.one_of(sdp_strategy(bases), json_values)
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("offer"), "sdp": sdp},
            optional={"webrtc_id": ids, "token": json_values},
        ),
        st.fixed_dictionaries(
            {"type": st.just("ice-candidate"), "candidate": candidates}, optional={"webrtc_id": ids}
        ),
        st.fixed_dictionaries(
            {"type": st.just("close")}, optional={"webrtc_id": ids, "token": json_values}
        ),
        st.builds(
            lambda kind, rest: {**rest, "type": kind},
            st.one_of(
                st.sampled_from(["answer", "ping", "pong", "", "OFFER", "offer "]), json_values
            ),
            json_objects,
        ),
        json_objects,
    )


def frames(messages: st.SearchStrategy) -> st.SearchStrategy:
    """What one WebSocket message can be: JSON text, other text, binary, or oversized."""
    return st.one_of(
        messages.map(lambda m: ("text", json.dumps(m))),
        messages.map(lambda m: ("text", json.dumps(m))),
        st.text(max_size=60).map(lambda t: ("text", t)),
        st.binary(max_size=400).map(lambda b: ("bytes", b)),
        messages.map(lambda m: ("bytes", json.dumps(m).encode())),
        st.sampled_from([("big-text", MAX + 1), ("big-bytes", MAX + 1), ("big-text", 4 * MAX)]),
    )


# -- the server side, and what its answers must look like ------------------------------


def ws_base(asgi_server: str) -> str:
    return "ws://" + asgi_server.split("://", 1)[1]


FRESH = itertools.count()


def materialize(frame: tuple[str, Any]) -> str | bytes:
    """A frame as sent; ``("start", message)`` gets a fresh session id in ``id_key``."""
    kind, value = frame
    if kind == "start":
        message = json.loads(value)
        message[message.pop("id_key")] = f"fuzz-{next(FRESH)}"
        if os.environ.get("FUZZ_VERBOSE"):
            print("fresh id", message)
        return json.dumps(message)
    if kind == "big-text":
        return json.dumps({"type": "offer", "event": "media", "sdp": "v" * value})
    if kind == "big-bytes":
        return b"\x01" * value
    return value


def assert_failure_body(body: dict, where: str) -> None:
    meta = body.get("meta")
    assert body.get("status") == "failed" and isinstance(meta, dict), (where, body)
    assert isinstance(meta.get("error"), str) and meta["error"], (where, body)
    assert isinstance(meta.get("message"), str) and meta["message"], (where, body)


SESSION_MESSAGES = {
    "fetch_output",
    "send_input",
    "error",
    "warning",
    "log",
    "end_stream",
    "connection",
    "stopword",
}


def check_signaling_reply(reply: dict, where: str) -> None:
    kind = reply.get("type")
    assert kind in {"answer", "ice-candidate", "pong", "failed", "closed", *SESSION_MESSAGES}, (
        where,
        reply,
    )
    if kind == "failed":
        assert_failure_body(reply, where)


def check_audio_reply(reply: dict, where: str) -> None:
    if "status" in reply:  # a refused start: FastRTC's failure body, then a 44xx close
        assert_failure_body(reply, where)
    elif "event" in reply:
        assert reply["event"] in {"media", "pong", "clear", "mark"}, (where, reply)
    else:
        assert reply.get("type") in {"session", *SESSION_MESSAGES}, (where, reply)
        if reply["type"] == "error":
            assert isinstance(reply.get("data"), str) and reply["data"], (where, reply)


def pings(sequence: list, key: str) -> int:
    """How many of ``sequence``'s frames are pings (``{key: "ping"}``): each gets a pong."""
    n = 0
    for kind, value in sequence:
        if kind == "text":
            try:
                message = json.loads(value)
            except ValueError:
                continue
            n += isinstance(message, dict) and message.get(key) == "ping"
    return n


async def converse(url: str, sequence: list, barrier: dict, check, pong) -> dict:
    """Send ``sequence`` on a new socket, then ``barrier`` (a ping): every reply up to
    the barrier's pong (or the server's close) is checked. Returns what happened."""
    outcome: dict[str, Any] = {"replies": 0, "close": None, "binary": 0}
    key = "type" if "type" in barrier else "event"
    pongs = pings(sequence, key) + 1
    sent_huge = False
    # A frame over uvicorn's limit without permessage-deflate: compressing 16 MiB took this
    # client (in the server's loop) 90 ms; uvicorn refuses it from its header either way.
    huge = any(kind.startswith("big") and value > WS_MAX_SIZE for kind, value in sequence)
    if os.environ.get("FUZZ_VERBOSE"):
        print("converse", url, str(sequence)[:2000])
    async with websockets.connect(
        url,
        max_size=None,
        open_timeout=10,
        close_timeout=5,
        compression=None if huge else "deflate",
    ) as ws:
        try:
            for frame in sequence:
                data = materialize(frame)
                sent_huge |= len(data) > WS_MAX_SIZE
                await ws.send(data)
            await ws.send(json.dumps(barrier))
            deadline = time.monotonic() + REPLY_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"{url}: no answer to the ping within {REPLY_TIMEOUT} s"
                try:
                    raw = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    raise AssertionError(
                        f"{url}: no answer to the ping within {REPLY_TIMEOUT} s"
                    ) from None
                if isinstance(raw, bytes):
                    outcome["binary"] += 1  # PCM16 audio after a pcm16 start
                    continue
                reply = json.loads(raw)
                outcome["replies"] += 1
                if pong(reply):
                    pongs -= 1
                    if not pongs:
                        break
                    continue
                check(reply, url)
        except websockets.ConnectionClosed:
            pass
    code = ws.close_code
    outcome["close"] = code
    assert code not in (1011, 1006, None) or (code == 1006 and sent_huge), (url, code, sequence)
    assert code != 1009 or sent_huge, (url, code)
    assert code in (1000, 1001, 1005, 1009) or 4000 <= code < 5000, (url, code)
    return outcome


async def replay(examples: list, run, concurrency: int = 1) -> list:
    """Run every example (``concurrency`` at a time); failures are collected, not raised
    at the first, so one run reports them all."""
    failures: list[str] = []
    results: list[Any] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(example: Any) -> None:
        async with gate:
            started = time.monotonic()
            try:
                results.append(await run(example))
            except AssertionError as exc:
                failures.append(f"{str(exc)[:1500]}\n  example: {str(example)[:600]}")
            finally:
                TIMELINE.append((started, time.monotonic() - started, str(example)[:300]))

    await asyncio.gather(*(one(e) for e in examples))
    assert not failures, f"{len(failures)} of {len(examples)} failed:\n" + "\n".join(failures[:8])
    return results


TIMELINE: list[tuple[float, float, str]] = []  # (monotonic start, seconds, example)


def in_flight(at: float, started: float) -> list[str]:
    return [
        f"{took:.2f}s {example}"
        for t0, took, example in TIMELINE
        if t0 - started - 0.05 <= at <= t0 - started + took + 0.05
    ]


async def beside_echo(rtc_url: str, work, keep: frozenset[str] = frozenset()) -> Any:
    """Run ``work()`` while the live echo plays; then check the echo and that nothing but
    the echo and ``keep`` is left live."""
    TIMELINE.clear()
    async with live_echo(rtc_url) as echo:
        started = time.monotonic()
        result = await work()
        await echo.observed(MIN_WINDOW)
        elapsed = time.monotonic() - started
        disturbed = echo.disturbed()
        summary = echo.summary()
        await assert_nothing_left({echo.webrtc_id, *keep})
    await assert_nothing_left(set(keep))
    stalls = {at: in_flight(at, echo.started) for at, *_ in summary["loop_stalls"]}
    print(f"\n{len(TIMELINE)} examples in {elapsed:.1f} s; echo {summary}")
    if os.environ.get("FUZZ_VERBOSE"):
        print("in flight during the stalls:", stalls)
    if disturbed:
        raise AssertionError(f"{disturbed}; in flight during the stalls: {stalls}")
    return result


def statuses(results: list) -> dict:
    out: dict = {}
    for r in results:
        out[r] = out.get(r, 0) + 1
    return out


# -- HTTP signaling ------------------------------------------------------------------

STREAMS = ["echo", "flip", "av", "video-send", "tone", "nope"]


async def test_http_signaling(rtc_url, no_server_errors):  # noqa: F811
    bases = await base_offers()
    examples = draw(st.tuples(st.sampled_from(STREAMS), signaling_messages(bases)), 150) + draw(
        st.tuples(st.sampled_from(STREAMS), st.binary(max_size=300)), 20
    )

    async def run(example: tuple[str, Any]) -> int:
        stream, body = example
        url = f"{rtc_url}{stream}/webrtc/offer"
        if isinstance(body, bytes):
            status, reply = await asyncio.to_thread(post_raw, url, body)
        else:
            status, reply = await http_json(url, body)
        assert status < 500, (status, reply)
        if status >= 400:
            assert_failure_body(reply, url)
        elif "sdp" in reply:  # aiortc took it: hang up at once
            status, _ = await http_json(
                url, {"type": "close", "webrtc_id": reply["webrtc_id"], "token": reply["token"]}
            )
            assert status == 200
        return status

    results = await beside_echo(rtc_url, lambda: replay(examples, run, concurrency=4))
    print("HTTP signaling statuses", statuses(results))


async def test_sdp(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    """Offers' SDP alone: random, mangled, odd m-lines, hundreds of sections, and sizes
    around MAX_SIGNALING_BYTES, over HTTP and the signaling WebSocket."""
    bases = await base_offers()
    sdps = draw(sdp_strategy(bases), 80)
    sdps += [padded(b, size) for b in bases[:3] for size in SIZES]
    sdps += [odd_m_lines(bases[2], line, 3, n) for line in M_LINES for n in (1, 400)]
    sdps += [many_sections(b, n) for b in bases[:3] for n in (10, 200)]
    examples = [
        (stream, via, sdp)
        for i, sdp in enumerate(sdps)
        for stream, via in [(["echo", "av", "flip"][i % 3], ["http", "ws"][i % 2])]
    ]
    base = ws_base(asgi_server)

    async def run(example: tuple[str, str, str]) -> Any:
        stream, via, sdp = example
        if via == "ws":
            return (
                await converse(
                    f"{base}/ws/rtc/{stream}/",
                    [("text", json.dumps({"type": "offer", "sdp": sdp}))],
                    {"type": "ping"},
                    check_signaling_reply,
                    lambda r: r.get("type") == "pong",
                )
            )["close"]
        url = f"{rtc_url}{stream}/webrtc/offer"
        status, reply = await http_json(url, {"type": "offer", "sdp": sdp})
        assert status < 500, (status, reply)
        if status >= 400:
            assert_failure_body(reply, url)
        else:
            status, _ = await http_json(
                url, {"type": "close", "webrtc_id": reply["webrtc_id"], "token": reply["token"]}
            )
            assert status == 200
        return status

    results = await beside_echo(rtc_url, lambda: replay(examples, run, concurrency=2))
    print("SDP outcomes", statuses(results))


# -- the signaling WebSocket ------------------------------------------------------------

OUT_OF_ORDER_SIGNALING = [
    [("text", json.dumps({"type": "ice-candidate", "candidate": None}))],  # before any offer
    [
        ("text", json.dumps({"type": "close"})),
        ("text", json.dumps({"type": "offer", "sdp": "v=0"})),
    ],
    [("big-bytes", WS_MAX_SIZE + 1)],
]


async def test_signaling_websocket(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    bases = await base_offers()
    good_offer = [("text", json.dumps({"type": "offer", "sdp": bases[0]}))]
    examples = draw(
        st.tuples(
            st.sampled_from(STREAMS),
            st.lists(frames(signaling_messages(bases)), min_size=1, max_size=5),
        ),
        60,
    )
    # A real offer first (answered: a live session), then the fuzz.
    offers = st.sampled_from(bases[:3]).map(
        lambda sdp: ("text", json.dumps({"type": "offer", "sdp": sdp}))
    )
    examples += draw(
        st.tuples(st.sampled_from(["echo", "av"]), started(offers, signaling_messages(bases))), 30
    )
    examples += [("echo", seq) for seq in OUT_OF_ORDER_SIGNALING]
    examples += [
        ("echo", good_offer * 2),  # an offer twice on one socket: 409
        (
            "echo",
            [
                *good_offer,
                ("text", json.dumps({"type": "ice-candidate", "candidate": {"candidate": "x"}})),
            ],
        ),
    ]
    base = ws_base(asgi_server)

    async def run(example: tuple[str, list]) -> Any:
        stream, sequence = example
        return (
            await converse(
                f"{base}/ws/rtc/{stream}/",
                sequence,
                {"type": "ping"},
                check_signaling_reply,
                lambda r: r.get("type") == "pong",
            )
        )["close"]

    results = await beside_echo(rtc_url, lambda: replay(examples, run, concurrency=2))
    print("signaling WebSocket closes", statuses(results))


# -- FastRTC's audio WebSocket ----------------------------------------------------------

rates = st.one_of(
    st.sampled_from(
        [
            8000,
            16000,
            24000,
            48000,
            96000,
            7999,
            96001,
            0,
            -1,
            "16000",
            "x",
            1e999,
            -1e999,
            math.nan,
            16000.5,
            10**30,
        ]
    ),
    json_values,
)
payloads = st.one_of(
    st.binary(max_size=800).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=20),
    json_values,
    st.just(""),
    st.just(base64.b64encode(b"\xff" * 24000).decode()),
)  # 3 s at 8 kHz
audio_events = st.one_of(
    st.fixed_dictionaries(
        {"event": st.just("start")},
        optional={
            "websocket_id": ids,
            "webrtc_id": ids,
            "sample_rate": rates,
            "output_sample_rate": rates,
            "encoding": st.one_of(st.sampled_from(["mulaw", "pcm16"]), json_values),
        },
    ),
    st.fixed_dictionaries(
        {
            "event": st.just("media"),
            "media": st.one_of(st.fixed_dictionaries({"payload": payloads}), json_values),
        }
    ),
    st.sampled_from(
        [
            {"event": "stop"},
            {"event": "ping"},
            {"event": "binary"},
            {"event": "session_message"},
            {"event": "clear"},
            {"event": "burst_end"},
            {"event": "mark"},
            {"event": "dtmf"},
            {"event": "connected"},
            {"event": ""},
            {"event": "__class__"},
            {"event": "start", "websocket_id": "fuzz-twice"},
        ]
    ),
    st.builds(
        lambda e, rest: {**rest, "event": e},
        st.one_of(st.text(max_size=12), json_values),
        json_objects,
    ),
    json_objects,
)
AUDIO_STREAMS = ["echo", "tone", "audio-send", "limited", "flip", "nope"]
START = ("text", json.dumps({"event": "start", "websocket_id": "fuzz-order"}))
MEDIA = ("text", json.dumps({"event": "media", "media": {"payload": "//8="}}))
OUT_OF_ORDER_AUDIO = [
    [MEDIA, START],  # media before start
    [START, START],  # start twice
    [START, ("text", json.dumps({"event": "stop"})), MEDIA],  # stop, then media
    [("bytes", b"\x00\x01" * 160), START],  # PCM16 before a pcm16 start
    [
        ("text", json.dumps({"event": "start", "websocket_id": "fuzz-pcm", "encoding": "pcm16"})),
        ("bytes", b"\x00" * 161),
        MEDIA,
        ("bytes", b"\x00\x01" * 48000 * 3),
    ],
    [("big-bytes", WS_MAX_SIZE + 1)],
]


good_starts = st.fixed_dictionaries(
    {"event": st.just("start"), "id_key": st.sampled_from(["websocket_id", "webrtc_id"])},
    optional={
        "encoding": st.sampled_from(["mulaw", "pcm16"]),
        "sample_rate": st.sampled_from([8000, 16000, 48000]),
        "output_sample_rate": st.sampled_from([8000, 24000, 48000]),
    },
).map(lambda m: ("start", json.dumps(m)))


def started(start: st.SearchStrategy, events: st.SearchStrategy) -> st.SearchStrategy:
    """A session that starts well, then gets fuzzed."""
    return st.builds(
        lambda first, rest: [first, *rest], start, st.lists(frames(events), min_size=1, max_size=6)
    )


async def test_audio_websocket(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    examples = draw(
        st.tuples(
            st.sampled_from(AUDIO_STREAMS), st.lists(frames(audio_events), min_size=1, max_size=6)
        ),
        80,
    )
    examples += draw(
        st.tuples(
            st.sampled_from(["echo", "tone", "audio-send"]), started(good_starts, audio_events)
        ),
        80,
    )
    examples += [("echo", seq) for seq in OUT_OF_ORDER_AUDIO]
    base = ws_base(asgi_server)

    async def run(example: tuple[str, list]) -> Any:
        stream, sequence = example
        return (
            await converse(
                f"{base}/rtc/{stream}/websocket/offer",
                sequence,
                {"event": "ping"},
                check_audio_reply,
                lambda r: r.get("event") == "pong",
            )
        )["close"]

    results = await beside_echo(rtc_url, lambda: replay(examples, run, concurrency=2))
    print("audio WebSocket closes", statuses(results))


# -- Twilio's Media Streams -------------------------------------------------------------

twilio_events = st.one_of(
    st.just({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    st.fixed_dictionaries(
        {"event": st.just("start")},
        optional={
            "streamSid": ids,
            "start": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "streamSid": ids,
                        "callSid": json_values,
                        "customParameters": st.one_of(
                            json_values,
                            st.dictionaries(
                                st.sampled_from(["gain", "caller", "x"]), json_values, max_size=3
                            ),
                        ),
                    },
                ),
            ),
        },
    ),
    st.fixed_dictionaries(
        {
            "event": st.just("media"),
            "media": st.one_of(st.fixed_dictionaries({"payload": payloads}), json_values),
        },
        optional={"streamSid": ids},
    ),
    st.fixed_dictionaries(
        {
            "event": st.just("mark"),
            "mark": st.one_of(json_values, st.fixed_dictionaries({"name": json_values})),
        }
    ),
    st.fixed_dictionaries(
        {
            "event": st.just("dtmf"),
            "dtmf": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {"digit": st.one_of(st.sampled_from(["#", "1"]), json_values)}
                ),
            ),
        }
    ),
    st.just({"event": "stop"}),
    audio_events,
)
TWILIO_START = (
    "text",
    json.dumps(
        {
            "event": "start",
            "streamSid": "fuzz-call",
            "start": {"callSid": "CA1", "customParameters": {}},
        }
    ),
)
OUT_OF_ORDER_TWILIO = [
    [MEDIA, TWILIO_START],
    [TWILIO_START, TWILIO_START],
    [TWILIO_START, ("text", json.dumps({"event": "stop"})), MEDIA],
    [("text", json.dumps({"event": "dtmf", "dtmf": {"digit": "#"}})), TWILIO_START],
    [("big-bytes", WS_MAX_SIZE + 1)],
]


good_calls = st.fixed_dictionaries(
    {
        "event": st.just("start"),
        "id_key": st.just("streamSid"),
        "start": st.fixed_dictionaries(
            {},
            optional={
                "callSid": st.text(max_size=10),
                "customParameters": st.dictionaries(
                    st.sampled_from(["gain", "caller", "x"]), st.text(max_size=6), max_size=3
                ),
            },
        ),
    },
).map(lambda m: ("start", json.dumps(m)))


async def test_twilio_media_streams(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    examples = draw(
        st.tuples(
            st.sampled_from(AUDIO_STREAMS), st.lists(frames(twilio_events), min_size=1, max_size=6)
        ),
        60,
    )
    examples += draw(
        st.tuples(
            st.sampled_from(["echo", "tone", "audio-send"]), started(good_calls, twilio_events)
        ),
        60,
    )
    examples += [("echo", seq) for seq in OUT_OF_ORDER_TWILIO]
    base = ws_base(asgi_server)

    async def run(example: tuple[str, list]) -> Any:
        stream, sequence = example
        return (
            await converse(
                f"{base}/rtc/{stream}/telephone/handler",
                sequence,
                {"event": "ping"},
                check_audio_reply,
                lambda r: r.get("event") == "pong",
            )
        )["close"]

    results = await beside_echo(rtc_url, lambda: replay(examples, run, concurrency=2))
    print("Twilio closes", statuses(results))


# -- input hook values ------------------------------------------------------------------


def quiet(level, count, choice, picks, on, label):
    """Receive mode: 20 ms of silence at a time, whatever the inputs say."""
    import numpy as np

    while True:
        yield 16000, np.zeros((1, 320), np.int16)


INPUTS = Stream(
    quiet,
    modality="audio",
    mode="receive",
    additional_inputs=[
        Slider(minimum=0, maximum=1, value=0.5, label="Level"),
        Number(value=3, precision=0, label="Count"),
        Dropdown(choices=["a", "b", ("Sea", "c")], value="a", label="Choice"),
        Dropdown(choices=["x", "y", "z"], value=["x"], multiselect=True, label="Picks"),
        Checkbox(value=False, label="On"),
        Textbox(value="", max_length=16, label="Label"),
    ],
)
NAMES = ["level", "count", "choice", "picks", "on", "label"]
valid_values = st.fixed_dictionaries(
    {},
    optional={
        "level": st.floats(0, 1),
        "count": st.integers(-(10**6), 10**6),
        "choice": st.sampled_from(["a", "b", "c"]),
        "picks": st.lists(st.sampled_from("xyz"), max_size=3),
        "on": st.booleans(),
        # DRF refuses NUL characters in text (PostgreSQL's jsonb, which keeps the inputs, cannot
        # hold them): valid text is any other.
        "label": st.text(st.characters(blacklist_characters="\x00"), max_size=16),
    },
)
any_values = st.dictionaries(
    st.one_of(st.sampled_from([*NAMES, "args", "webrtc_id", "token"]), st.text(max_size=6)),
    json_values,
    max_size=4,
)


async def test_input_hook_values(rtc_url, no_server_errors):  # noqa: F811
    examples = (
        [("valid", v) for v in draw(valid_values, 60)]
        + [("any", v) for v in draw(any_values, 100)]
        + [("args", v) for v in draw(st.lists(json_values, max_size=7), 30)]
        + [("raw", v) for v in draw(st.binary(max_size=200), 15)]
    )

    with override_streams(keep=True, **{"fuzz-inputs": INPUTS}):
        async with StreamClient(rtc_url, "fuzz-inputs") as target:
            url = target.url("input")

            async def run(example: tuple[str, Any]) -> int:
                kind, values = example
                if kind == "raw":
                    status, reply = await asyncio.to_thread(post_raw, url, values)
                else:
                    body = {"args": values} if kind == "args" else dict(values)
                    body.setdefault("webrtc_id", target.webrtc_id)
                    body.setdefault("token", target.token)
                    status, reply = await http_json(url, body)
                assert status < 500, (status, reply)
                if status >= 400:
                    assert_failure_body(reply, url)
                if kind == "valid":
                    assert status == 200, (status, reply)
                    got = reply["inputs"]
                    for name, value in values.items():
                        expected = list(dict.fromkeys(value)) if name == "picks" else value
                        assert got[name] == expected, (name, value, got)
                return status

            results = await beside_echo(
                rtc_url, lambda: replay(examples, run), keep=frozenset({target.webrtc_id})
            )
            # The session took every valid value and is still there.
            assert (await target.set_input(level=0.25))["inputs"]["level"] == 0.25
            await target.hang_up()
        await assert_nothing_left()
    print("input hook statuses", statuses(results))


# -- what the fuzzing found, kept as plain regression tests -----------------------------


@pytest.mark.parametrize("field", ["sample_rate", "output_sample_rate"])
@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "1e999"])
async def test_an_infinite_sample_rate_is_a_bad_start(asgi_server, field, value, no_server_errors):  # noqa: F811
    """``int(inf)`` raised OverflowError out of on_start: uvicorn dropped the socket (1006)
    and logged 'Exception in ASGI application'."""
    url = f"{ws_base(asgi_server)}/rtc/echo/websocket/offer"
    async with websockets.connect(url) as ws:
        await ws.send(f'{{"event": "start", "websocket_id": "fuzz-inf", "{field}": {value}}}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert_failure_body(reply, url)
        assert reply["meta"]["error"] == "invalid_start"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 4400


def test_an_int_past_floats_range_is_an_invalid_input():
    """``float(10**309)`` raised OverflowError, which InputSpec.clean let through."""
    from django_rtcstream.exceptions import InvalidInput

    for spec in INPUTS.inputs.specs[:2]:  # a slider, a whole-number Number
        with pytest.raises(ValueError, match="float's range"):
            spec.clean(10**309)
    with pytest.raises(InvalidInput):
        INPUTS.inputs.clean_named({"level": -(10**309)}, INPUTS.inputs.defaults())


async def test_a_twilio_parameter_past_floats_range_is_ignored(asgi_server, no_server_errors):  # noqa: F811
    """A custom parameter named like an input, 10**309: the OverflowError escaped on_start
    and uvicorn dropped the call (1006). Invalid parameters are ignored."""
    url = f"{ws_base(asgi_server)}/rtc/echo/telephone/handler"
    async with websockets.connect(url) as ws:
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "streamSid": "fuzz-big-gain",
                    "start": {"customParameters": {"gain": 10**309}},
                }
            )
        )
        await ws.send(json.dumps({"event": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"event": "pong"}
        from django_rtcstream.sessions.manager import manager

        assert "fuzz-big-gain" in manager().sessions
    await assert_nothing_left()


@pytest.mark.parametrize("protocol", ["signaling", "audio", "twilio"])
async def test_a_message_after_stop_leaves_no_session(asgi_server, protocol, no_server_errors):  # noqa: F811
    """A ping after ``stop`` (or ``close``): answering it raised uvicorn's
    ClientDisconnected, which ended the consumer's loop without ``disconnect()``. The
    socket's session stayed live: until the worker stopped (audio, phone) or ICE gave up
    (WebRTC, 10-30 s)."""
    base = ws_base(asgi_server)
    if protocol == "signaling":
        url, start = f"{base}/ws/rtc/echo/", {"type": "offer", "sdp": (await base_offers())[0]}
        stop, ping = {"type": "close"}, {"type": "ping"}
    else:
        path = "websocket/offer" if protocol == "audio" else "telephone/handler"
        url, stop, ping = f"{base}/rtc/echo/{path}", {"event": "stop"}, {"event": "ping"}
        start = {"event": "start", "websocket_id": "fuzz-stop", "streamSid": "fuzz-stop"}
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(start))
        await ws.send(json.dumps(ping))
        while json.loads(await asyncio.wait_for(ws.recv(), 10)).get(next(iter(ping))) != "pong":
            pass
        from django_rtcstream.sessions.manager import manager

        assert len(manager().sessions) == 1
        await ws.send(json.dumps(stop))
        await ws.send(json.dumps(ping))
    await assert_nothing_left(timeout=3)
