"""The low-latency audio jitter buffer: hold, give up on loss, shrink back, installed for real."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtpPacket

from django_rtcstream.media.jitter import AudioJitterBuffer, check_seam


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def packet(seq, ts=None):
    p = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=(ts if ts is not None else seq * 960))
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
    released = feed(AudioJitterBuffer(prefetch=prefetch, clock=clock), clock, range(10))
    assert released[:prefetch] == [None] * prefetch
    assert released[prefetch:] == list(range(10 - prefetch))


def test_a_lost_packet_is_given_up_after_a_bounded_wait():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, max_wait=0.06, clock=clock)
    released = feed(buffer, clock, [0, 1, 2, 4, 5, 6, 7, 8])  # 3 never comes
    # aiortc's buffer would wait for 16 packets (~320 ms); this one waits ~60 ms.
    assert released == [None, 0, 1, 2, None, None, None, 4]
    assert buffer.lost == 1
    assert feed(buffer, clock, [3]) == [None] and buffer.late == 1  # too late: dropped


def test_a_swapped_pair_costs_nothing():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, clock=clock)
    released = feed(buffer, clock, [0, 1, 3, 2, 4, 5])
    assert released == [None, 0, 1, 2, 3, 4] and buffer.lost == buffer.dropped == 0


def test_deep_reordering_delays_then_the_buffer_shrinks_back_to_its_target():
    clock = Clock()
    buffer = AudioJitterBuffer(prefetch=1, shrink_after=5, clock=clock)
    feed(buffer, clock, range(0, 10))
    # A burst of reordering: 12-14 overtake 10 and 11.
    feed(buffer, clock, [12, 13, 14, 10, 11])
    depth = [len(buffer._packets)]
    for seq in range(15, 40):
        feed(buffer, clock, [seq])
        depth.append(len(buffer._packets))
    assert max(depth) >= 3  # the burst left frames queued beyond the target...
    assert depth[-1] == 1   # ...and the buffer shrank back to one held frame
    assert buffer.dropped >= 2 and buffer.lost == 0


def test_sequence_numbers_wrap_around():
    clock = Clock()
    released = feed(AudioJitterBuffer(prefetch=1, clock=clock), clock, [65534, 65535, 0, 1])
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
    from django_rtcstream.sessions.runtime import manager
    from tests.media import collect

    stream = get_stream("echo")
    stream.audio_prefetch = 2
    try:
        async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
            await collect(client.audio_frames, 10)
            server = manager().get(client.webrtc_id).jitter_buffer
            client_buffers = [getattr(t.receiver, "_RTCRtpReceiver__jitter_buffer")
                              for t in client.pc.getTransceivers()]
    finally:
        stream.audio_prefetch = None
    assert isinstance(server, AudioJitterBuffer) and server.prefetch == 2
    assert any(isinstance(b, AudioJitterBuffer) and b.prefetch == 1 for b in client_buffers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_audio_keeps_flowing_over_a_jittery_lossy_reordering_link(rtc_url):
    """0-40 ms random delay (so reordering) and 3 % loss both ways: no stall, right tone."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from django_rtcstream.client import ToneAudioTrack, http_json
    from django_rtcstream.sessions.runtime import manager
    from tests.media import dominant_frequency
    from tests.relay import JitteryRelay, host_candidate, via_relay

    relay = JitteryRelay(max_delay=0.04, loss=0.03)
    await relay.start()
    pc = RTCPeerConnection()
    pc.addTrack(ToneAudioTrack(440))
    await pc.setLocalDescription(await pc.createOffer())
    relay.client = host_candidate(pc.localDescription.sdp)
    status, answer = await http_json(f"{rtc_url}echo/webrtc/offer", {
        "type": "offer", "sdp": via_relay(pc.localDescription.sdp, relay.back_port),
        "webrtc_id": "jittery"})
    assert status == 200
    relay.server = host_candidate(answer["sdp"])
    port = relay.front_port
    frames = []
    connected = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        from django_rtcstream.media import jitter

        jitter.install_on_track(pc, track, 1)  # as the package's client does

        async def read():
            try:
                while True:
                    frames.append(await track.recv())
            except Exception:
                return
        asyncio.ensure_future(read())

    pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
    await pc.setRemoteDescription(RTCSessionDescription(via_relay(answer["sdp"], port), "answer"))
    try:
        await asyncio.wait_for(connected.wait(), 10)
        await asyncio.sleep(4.0)
        buffer = manager().get("jittery").jitter_buffer
        received = len(frames)
        tail = frames[-100:]
    finally:
        await pc.close()
        relay.close()
    # Both directions crossed the bad link (~50 packets/s each way), and it lost some.
    assert min(relay.counts.values()) > 150 and relay.dropped > 0
    assert buffer.lost + buffer.late + buffer.dropped > 0  # and the buffer had to cope
    assert received > 0.8 * 4.0 * 50  # audio never stalled for long
    frequency, level = dominant_frequency(tail)
    assert abs(frequency - 440) < 15 and level > 0.05
