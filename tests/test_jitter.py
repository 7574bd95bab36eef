"""The low-latency audio jitter buffer: hold, give up on loss, shrink back, installed for real."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from aiortc.rtp import RtpPacket

from django_rtcstream.media.jitter import AudioJitterBuffer, check_seam


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def packet(seq, ts=None):
    p = RtpPacket(
        payload_type=111,
        sequence_number=seq & 0xFFFF,
        timestamp=(ts if ts is not None else seq * 960),
    )
    p._data = bytes([seq & 0xFF])
    return p


def feed(buffer, clock, seqs, step=0.02):
    """Add packets 20 ms apart; returns the sequence numbers released after each add."""
    out = []
    for seq in seqs:
        clock.now += step
        _, frame = buffer.add(packet(seq))
        out.append(frame.data[0] if frame else None)
    return out


@pytest.mark.parametrize("prefetch", [0, 1, 2, 4])
def test_the_first_frame_is_released_after_the_configured_prefetch(prefetch):
    clock = Clock()
    released = feed(AudioJitterBuffer(prefetch=prefetch), clock, range(10))
    assert released[:prefetch] == [None] * prefetch
    assert released[prefetch:] == list(range(10 - prefetch))


def test_a_lost_packet_is_given_up_once_more_packets_came_after_it_than_the_hold():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1)
    released = feed(buffer, clock, [0, 1, 2, 4, 5, 6, 7, 8])  # 3 never comes
    # aiortc's buffer would wait for 16 packets (~320 ms); this one waits for one: the
    # loss costs that frame and no delay (4 comes out as the next frame would have).
    assert released == [None, 0, 1, 2, 4, 5, 6, 7]
    assert buffer.lost == 1 and buffer.dropped == 0
    deep = AudioJitterBuffer(prefetch=3, adaptive=False)
    released = feed(deep, clock, [0, 1, 2, 3, 5, 6, 7, 8, 9])  # 4 never comes
    assert released == [None, None, None, 0, 1, 2, 3, 5, 6] and deep.lost == 1
    assert feed(buffer, clock, [3]) == [None] and buffer.late == 1  # too late: dropped


def test_a_swapped_pair_costs_nothing():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1)
    released = feed(buffer, clock, [0, 1, 3, 2, 4, 5])
    assert released == [None, 0, 1, 2, 3, 4] and buffer.lost == buffer.dropped == 0


def test_deep_reordering_a_fixed_buffer_gives_up_on_without_delay():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, adaptive=False)
    feed(buffer, clock, range(10))
    # A burst of reordering: 12-14 overtake 10 and 11, deeper than the one-frame hold.
    released = feed(buffer, clock, [12, 13, 14, 10, 11, 15, 16])
    assert released == [9, 12, 13, None, None, 14, 15]  # 10 and 11 given up: no stall
    assert buffer.lost == 2 and buffer.late == 2 and len(buffer._packets) == 1


def test_the_adaptive_buffer_learns_the_reordering_then_shrinks_back():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, shrink_after=5, calm_after=20)
    feed(buffer, clock, range(10))
    feed(buffer, clock, [12, 13, 14, 10, 11])  # the first burst is a surprise...
    assert buffer.late == 2 and buffer.target == 4
    feed(buffer, clock, range(15, 20))
    released = feed(buffer, clock, [22, 23, 24, 20, 21, 25, 26, 27])  # ...the same again is not
    assert buffer.late == 2 and released[-4:] == [20, 21, 22, 23]
    depth = []
    for seq in range(28, 150):  # calm: the hold steps back down, one frame at a time
        feed(buffer, clock, [seq])
        depth.append(len(buffer._packets))
    assert max(depth) >= 4 and buffer.target == 1 and depth[-1] == 1
    assert buffer.dropped == 3 and buffer.lost == 2


def jittery_arrivals(count, max_delay=0.04, seed=7, start=0):
    """Packets sent every 20 ms, each delayed by a random 0..max_delay: (arrival, seq) in arrival order."""
    rng = random.Random(seed)
    return sorted(
        (start * 0.02 + i * 0.02 + rng.uniform(0, max_delay), start + i) for i in range(count)
    )


def play(buffer, clock, arrivals):
    released = []
    for t, seq in arrivals:
        clock.now = t
        _, frame = buffer.add(packet(seq))
        if frame:
            released.append(frame.data[0])
    return released


def test_the_adaptive_hold_grows_under_jitter_and_shrinks_back_when_the_link_calms():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, calm_after=50)
    # 10 s of 0-100 ms random delay: packets overtaken by up to 4 newer ones.
    arrivals = jittery_arrivals(500, max_delay=0.1)
    released = play(buffer, clock, arrivals)
    assert buffer.target >= 3  # it grew to the reordering's depth...
    assert buffer.late <= 2 and buffer.dropped == 0  # ...after giving up on a packet or two
    assert len(released) >= 490
    assert all((b - a) % 256 in (1, 2) for a, b in itertools.pairwise(released))  # in order

    # A fixed one-frame hold gives up on every packet overtaken by two or more.
    fixed = AudioJitterBuffer(prefetch=1, adaptive=False)
    assert len(play(fixed, Clock(), arrivals)) < len(released) - 30
    assert fixed.target == 1 and fixed.late >= 30

    # The link calms: in-order packets every 20 ms. The hold steps back down to one frame.
    calm = [(10.5 + i * 0.02, 500 + i) for i in range(400)]
    lost = buffer.lost
    play(buffer, clock, calm)
    assert buffer.target == 1 and len(buffer._packets) == 1  # one frame held, as configured
    assert buffer.lost == lost  # stepping down drops (a frame per step), it loses nothing


def test_a_fixed_buffer_never_moves_its_target():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, adaptive=False)
    play(buffer, clock, jittery_arrivals(200, max_delay=0.1))
    assert buffer.target == buffer.peak_target == 1


def test_sequence_numbers_wrap_around():
    clock = Clock()
    released = feed(AudioJitterBuffer(prefetch=1), clock, [65534, 65535, 0, 1])
    assert released == [None, 65534 & 0xFF, 65535 & 0xFF, 0]


def test_the_seam_into_aiortc_is_where_we_expect():
    async def check():
        check_seam()

    asyncio.run(check())


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_live_sessions_use_the_configured_buffer_on_both_ends(rtc_url):
    from django_rtcstream.client import StreamClient, ToneAudioTrack
    from django_rtcstream.registry import get_stream
    from django_rtcstream.sessions.manager import manager
    from tests.media import collect

    stream = get_stream("echo")
    stream.audio_prefetch = 2
    try:
        async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
            await collect(client.audio_frames, 10)
            server = manager().get(client.webrtc_id).transport.jitter_buffer
            client_buffers = [
                t.receiver._RTCRtpReceiver__jitter_buffer for t in client.pc.getTransceivers()
            ]
    finally:
        stream.audio_prefetch = None
    assert isinstance(server, AudioJitterBuffer) and server.prefetch == 2
    assert any(isinstance(b, AudioJitterBuffer) and b.prefetch == 1 for b in client_buffers)


async def echo_through_relay(rtc_url, relay, webrtc_id, seconds=4.0):
    """Echo a 440 Hz tone through ``relay`` (both directions); (frames back, server buffer)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from django_rtcstream.client import ToneAudioTrack, http_json
    from django_rtcstream.media import jitter
    from django_rtcstream.sessions.manager import manager
    from tests.relay import host_candidate, via_relay

    await relay.start()
    pc = RTCPeerConnection()
    pc.addTrack(ToneAudioTrack(440))
    await pc.setLocalDescription(await pc.createOffer())
    relay.client = host_candidate(pc.localDescription.sdp)
    status, answer = await http_json(
        f"{rtc_url}echo/webrtc/offer",
        {
            "type": "offer",
            "sdp": via_relay(pc.localDescription.sdp, relay.back_port),
            "webrtc_id": webrtc_id,
        },
    )
    assert status == 200
    relay.server = host_candidate(answer["sdp"])
    frames = []
    readers = set()  # a task the loop only holds weakly could be collected mid-read
    connected = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        jitter.install_on_track(pc, track, 1)  # as the package's client does

        async def read():
            try:
                while True:
                    frames.append(await track.recv())
            except Exception:
                return

        readers.add(asyncio.ensure_future(read()))

    pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
    await pc.setRemoteDescription(
        RTCSessionDescription(via_relay(answer["sdp"], relay.front_port), "answer")
    )
    try:
        await asyncio.wait_for(connected.wait(), 10)
        await asyncio.sleep(seconds)
        buffer = manager().get(webrtc_id).transport.jitter_buffer
        return list(frames), buffer
    finally:
        await pc.close()
        relay.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_audio_keeps_flowing_over_a_jittery_lossy_reordering_link(rtc_url):
    """0-40 ms random delay (so reordering) and 3 % loss both ways: no stall, right tone."""
    from tests.media import dominant_frequency
    from tests.relay import JitteryRelay

    relay = JitteryRelay(max_delay=0.04, loss=0.03)
    frames, buffer = await echo_through_relay(rtc_url, relay, "jittery")
    # Both directions crossed the bad link (~50 packets/s each way), and it lost some.
    assert min(relay.counts.values()) > 150 and relay.dropped > 0
    assert buffer.lost + buffer.late + buffer.dropped > 0  # and the buffer had to cope
    assert len(frames) > 0.8 * 4.0 * 50  # audio never stalled for long
    frequency, level = dominant_frequency(frames[-100:])
    assert abs(frequency - 440) < 15 and level > 0.05


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_the_server_buffer_grows_on_a_deeply_reordering_link(rtc_url):
    """0-100 ms random delay, no loss: packets overtaken by up to four others. The
    server's adaptive buffer learns how deep the link reorders from the first packets it
    had to give up on, then holds that deep and gives up on (almost) nothing more."""
    from tests.relay import JitteryRelay

    relay = JitteryRelay(max_delay=0.1, loss=0.0)
    frames, buffer = await echo_through_relay(rtc_url, relay, "reordering")
    assert buffer.adaptive and buffer.peak_target >= 3
    assert buffer.late <= 6 and buffer.dropped <= 3  # of ~200 packets
    assert len(frames) > 0.8 * 4.0 * 50


# -- video: release on the marker bit -------------------------------------------------------


def vpacket(seq, ts, marker=0, data=None):
    p = RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=ts, marker=marker)
    p._data = data if data is not None else bytes([seq & 0xFF])
    return p


def test_a_video_frame_is_released_on_its_marker_packet_not_on_the_next_frame():
    from aiortc.jitterbuffer import JitterBuffer

    from django_rtcstream.media.jitter import MarkerVideoJitterBuffer

    frame1 = [vpacket(0, 3000), vpacket(1, 3000), vpacket(2, 3000, marker=1)]
    ours, aiortcs = MarkerVideoJitterBuffer(), JitterBuffer(capacity=512, is_video=True)
    assert [ours.add(p)[1] for p in frame1][:2] == [None, None]
    assert [aiortcs.add(p)[1] for p in frame1] == [None, None, None]  # waits for frame 2
    released = MarkerVideoJitterBuffer()
    out = [released.add(p)[1] for p in frame1]
    assert out[2] is not None and out[2].data == bytes([0, 1, 2]) and out[2].timestamp == 3000
    # aiortc's releases frame 1 only when frame 2's first packet arrives, 33 ms later at 30 fps
    assert aiortcs.add(vpacket(3, 6000))[1].data == bytes([0, 1, 2])


def test_a_video_frame_waits_for_every_packet_before_its_marker():
    from django_rtcstream.media.jitter import MarkerVideoJitterBuffer

    buffer = MarkerVideoJitterBuffer()
    assert buffer.add(vpacket(10, 90))[1] is None
    assert buffer.add(vpacket(12, 90, marker=1))[1] is None  # 11 is missing (late or resent)
    frame = buffer.add(vpacket(11, 90))[1]
    assert frame is not None and frame.data == bytes([10, 11, 12])
    # Next frame, its packets reordered: released once complete, in sequence order.
    assert buffer.add(vpacket(14, 180, marker=1))[1] is None
    assert buffer.add(vpacket(13, 180))[1].data == bytes([13, 14])


def test_a_frame_whose_marker_packet_was_lost_is_completed_by_the_next_frame():
    from django_rtcstream.media.jitter import MarkerVideoJitterBuffer

    buffer = MarkerVideoJitterBuffer()
    assert buffer.add(vpacket(0, 90))[1] is None
    assert buffer.add(vpacket(1, 90))[1] is None  # its marker packet never comes...
    frame = buffer.add(vpacket(2, 180))[1]  # ...the next frame starts (aiortc's rule)
    assert frame is not None and frame.data == bytes([0, 1])
    assert buffer.add(vpacket(3, 180, marker=1))[1].data == bytes([2, 3])


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
@pytest.mark.parametrize("release", [True, False])
async def test_video_sessions_release_on_the_marker_on_both_ends_unless_turned_off(
    rtc_url, release
):
    from aiortc.jitterbuffer import JitterBuffer
    from django.test import override_settings

    from django_rtcstream.client import StreamClient, SyntheticVideoTrack
    from django_rtcstream.conf import rtc_settings
    from django_rtcstream.media.jitter import MarkerVideoJitterBuffer
    from django_rtcstream.sessions.manager import manager
    from tests.media import collect

    settings = {**rtc_settings.user_settings, "VIDEO_MARKER_RELEASE": release}
    with override_settings(RTCSTREAM=settings):
        async with StreamClient(
            rtc_url, "flip", video=SyntheticVideoTrack(), video_marker_release=release
        ) as client:
            await collect(client.video_frames, 10)
            server = (
                manager()
                .get(client.webrtc_id)
                .transport.pc.getTransceivers()[0]
                .receiver._RTCRtpReceiver__jitter_buffer
            )
            mine = [
                t.receiver._RTCRtpReceiver__jitter_buffer
                for t in client.pc.getTransceivers()
                if t.kind == "video"
            ]
    expected = MarkerVideoJitterBuffer if release else JitterBuffer
    assert type(server) is expected and all(type(b) is expected for b in mine) and mine
