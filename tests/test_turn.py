"""TURN through a real coturn: relay-only media both ways, refused credentials, per-session minting.

The test starts Debian's ``turnserver`` on 127.0.0.1 with ``use-auth-secret``
(tests/coturn.py), and the app mints credentials for it with
``django_rtcstream.turn``. With the client and the server both relay-only, the
only path between them is through coturn's relay ports: the selected candidate
pair on both peer connections says so, and coturn's own counters show the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from django.conf import settings
from django.test import override_settings

from django_rtcstream import turn
from django_rtcstream.client import StreamClient, SyntheticVideoTrack, http_json
from django_rtcstream.media import ice
from django_rtcstream.sessions.manager import local_session
from tests.coturn import coturn
from tests.media import collect, rows_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

SECRET = "rtcstream-test-static-auth-secret-0123456789"


@pytest.fixture
def turnserver():
    with coturn(SECRET) as server:
        yield server


def turn_settings(server, *, secret=SECRET, relay_only=True, server_policy="relay"):
    return {
        **settings.RTCSTREAM,
        "TURN_SECRET": secret,
        "TURN_URLS": [server.url],
        "TURN_RELAY_ONLY": relay_only,
        "RTC_CONFIGURATION": "django_rtcstream.turn.rtc_configuration",
        "SERVER_ICE_SERVERS": "django_rtcstream.turn.server_ice_servers",
        "SERVER_ICE_TRANSPORT_POLICY": server_policy,
    }


def local_types(pc):
    gatherer = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
    return sorted({c.type for c in gatherer.getLocalCandidates()})


def usernames(pc):
    """The TURN username each ICE connection of ``pc`` allocated with."""
    transport = pc.getTransceivers()[0].receiver.transport.transport
    return transport._connection.turn_username


async def allocate(server, username, password):
    """One TURN allocation on ``server`` with these credentials; returns the relayed address."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", server.port), username, password
        ),
        10,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def refused_in_log(server, username):
    pattern = rf"user <{re.escape(username)}>: incoming packet .* error 401"
    await asyncio.to_thread(server.wait_for_line, pattern, 5)


def test_credentials_follow_coturns_rest_scheme():
    minted = turn.mint_credentials("s3cret", ttl=600, label="alice", now=1_700_000_000)
    assert minted.username == "1700000600:alice"
    assert minted.expires == 1_700_000_600
    digest = hmac.new(b"s3cret", b"1700000600:alice", hashlib.sha1).digest()
    assert minted.password == base64.b64encode(digest).decode()
    assert turn.mint_credentials("s3cret", ttl=5, now=10).username == "15"
    with pytest.raises(ValueError, match="separator"):
        turn.mint_credentials("s3cret", ttl=5, label="a:b")
    with pytest.raises(ValueError, match="positive"):
        turn.mint_credentials("s3cret", ttl=0)


async def test_coturn_allocates_for_minted_credentials_and_answers_401_to_expired_or_forged_ones(
    turnserver,
):
    good = turn.mint_credentials(SECRET, ttl=600)
    host, port = await allocate(turnserver, good.username, good.password)
    assert host == "127.0.0.1" and port > 0

    expired = turn.mint_credentials(SECRET, ttl=60, now=time.time() - 120)
    forged = turn.mint_credentials("not-the-secret", ttl=600)
    for bad in (expired, forged):
        with pytest.raises(stun.TransactionFailed) as refused:
            await allocate(turnserver, bad.username, bad.password)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401
        # The first 401 of every allocation is the challenge (no credentials yet); this
        # one answers the credentials themselves.
        await refused_in_log(turnserver, bad.username)


async def rtp_counts(pc):
    """(packets sent, bytes sent, packets received) of ``pc``'s RTP, from getStats()."""
    stats = (await pc.getStats()).values()
    sent = [s for s in stats if s.type == "outbound-rtp"]
    received = [s for s in stats if s.type == "inbound-rtp"]
    return (
        sum(s.packetsSent for s in sent),
        sum(s.bytesSent for s in sent),
        sum(s.packetsReceived for s in received),
    )


async def test_relay_only_client_and_server_exchange_media_through_coturn_both_ways(
    turnserver, rtc_url
):
    with override_settings(RTCSTREAM=turn_settings(turnserver)):
        async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
            assert client.config["rtc_configuration"]["iceTransportPolicy"] == "relay"
            frames = await collect(client.video_frames, 30, timeout=20)
            top, bottom = rows_brightness(frames[-1])
            assert bottom > 200 and top < 60, (top, bottom)  # sent, flipped, sent back
            session = local_session(client.webrtc_id)
            assert session is not None and session.transport.pc is not None
            # Neither side has anything but its TURN allocation to offer or use.
            assert local_types(client.pc) == local_types(session.transport.pc) == ["relay"]
            assert ice.selected_pair_types(client.pc) == ("relay", "relay")
            assert ice.selected_pair_types(session.transport.pc) == ("relay", "relay")
            peers = {
                usernames(client.pc): await rtp_counts(client.pc),
                usernames(session.transport.pc): await rtp_counts(session.transport.pc),
            }
    client_user, server_user = peers
    assert client_user != server_user and server_user.split(":")[1].startswith("server-")
    # coturn logs each allocation's traffic when it ends (the peers release them on close):
    # every RTP packet either peer sent or received went through its allocation.
    for user, (packets_sent, bytes_sent, packets_received) in peers.items():
        assert packets_sent >= 30 and packets_received >= 30, peers
        usage = await asyncio.to_thread(turnserver.usage, user, 15)
        # aiortc's unused allocations carry a few STUN checks; the busiest one, the media.
        relayed_in, relayed_out, packets_in, packets_out = max(usage)
        assert packets_in >= packets_sent and relayed_in >= bytes_sent, (user, usage, peers)
        assert packets_out >= packets_received and relayed_out > 0, (user, usage, peers)


async def test_a_client_forced_relay_only_reaches_a_server_with_host_candidates(
    turnserver, rtc_url
):
    settings_ = turn_settings(turnserver, relay_only=False, server_policy="all")
    with override_settings(RTCSTREAM=settings_):
        async with StreamClient(
            rtc_url, "flip", video=SyntheticVideoTrack(), relay_only=True
        ) as client:
            assert "iceTransportPolicy" not in client.config["rtc_configuration"]
            await collect(client.video_frames, 5, timeout=20)
            session = local_session(client.webrtc_id)
            assert local_types(client.pc) == ["relay"]
            assert "host" in local_types(session.transport.pc)
            assert ice.selected_pair_types(client.pc)[0] == "relay"
            assert ice.selected_pair_types(session.transport.pc)[1] == "relay"


async def test_a_relay_only_session_with_forged_credentials_does_not_connect(turnserver, rtc_url):
    forged = turn_settings(turnserver, secret="a-secret-coturn-does-not-know-0123456789")
    with override_settings(RTCSTREAM=forged):
        client = StreamClient(rtc_url, "flip", video=SyntheticVideoTrack())
        try:
            with pytest.raises(asyncio.TimeoutError):
                await client.connect(timeout=6)
            user = client.config["rtc_configuration"]["iceServers"][0]["username"]
            assert local_types(client.pc) == []  # coturn refused it: nothing to connect over
        finally:
            await client.close()
    await refused_in_log(turnserver, user)


async def test_every_session_gets_credentials_of_its_own(turnserver, rtc_url):
    with override_settings(RTCSTREAM=turn_settings(turnserver)):
        minted = []
        for _ in range(2):
            status, config = await http_json(f"{rtc_url}flip/config")
            assert status == 200, config
            [server] = config["rtc_configuration"]["iceServers"]
            assert server["urls"] == [turnserver.url]
            minted.append((server["username"], server["credential"]))
        servers = [turn.server_ice_servers()[0]["username"] for _ in range(2)]
    (first, first_password), (second, second_password) = minted
    assert first != second and first_password != second_password
    assert servers[0] != servers[1]
    for username in (first, second, *servers):
        expires = int(username.split(":")[0])
        assert abs(expires - (time.time() + 86400)) < 60  # TURN_TTL's default: a day
    # Both are real credentials: coturn allocates for each.
    for username, password in minted:
        await allocate(turnserver, username, password)


def test_the_servers_policy_comes_from_the_stream_or_the_setting_and_is_checked():
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    from django_rtcstream import Stream
    from tests.streams import flip_frame

    relay = {"iceServers": [{"urls": "turn:127.0.0.1:3478"}], "iceTransportPolicy": "relay"}
    stream = Stream(
        flip_frame, modality="video", mode="send-receive", server_rtc_configuration=relay
    )
    assert ice.server_configuration(stream).iceTransportPolicy == RTCIceTransportPolicy.RELAY
    with override_settings(
        RTCSTREAM={**settings.RTCSTREAM, "SERVER_ICE_TRANSPORT_POLICY": "relay"}
    ):
        plain = Stream(flip_frame, modality="video", mode="send-receive")
        assert ice.server_configuration(plain).iceTransportPolicy == RTCIceTransportPolicy.RELAY
    assert ice.server_configuration(plain).iceTransportPolicy == RTCIceTransportPolicy.ALL
    with pytest.raises(ValueError, match="iceTransportPolicy"):
        Stream(
            flip_frame,
            modality="video",
            mode="send-receive",
            server_rtc_configuration={"iceServers": [], "iceTransportPolicy": "none"},
        )
    with pytest.raises(ValueError, match="'all' or 'relay'"):
        ice.rtc_configuration([], policy="relay-only")
