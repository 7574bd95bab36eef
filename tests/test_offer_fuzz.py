"""Mangled offers (issue 13): every one gets a 4xx, never a 500, a traceback or a leftover.

The offers start from a real aiortc offer and are broken the ways a fuzzer
broke them: lines dropped, duplicated or swapped, m= sections cut, mids and
bundle groups that disagree, attributes with garbage values. A fixed seed keeps
the run the same every time; a live echo beside the flood must not notice it.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc import RTCPeerConnection

from django_rtcstream.client import StreamClient, ToneAudioTrack, http_json
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.media.sdp import MAX_MEDIA_SECTIONS, read_offer
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions.manager import manager
from tests.media import collect
from tests.test_bad_input import no_server_errors  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

SEED = int(__import__("os").environ.get("FUZZ_SEED", "1313"))
OFFERS = int(__import__("os").environ.get("FUZZ_OFFERS", "150"))

GARBAGE = [
    "",
    "x",
    "-1",
    "99999999999999999999",
    "a=b=c",
    "\x00",
    "IN IP4 999.1.1.1",
    "UDP/TLS/RTP/SAVPF",
    "sha-256 ZZ",
    "actpass",
    "0 1 2",
    "application 9",
]


async def base_offers() -> list[str]:
    """Real offers: audio, video, audio+video+data, data only."""
    offers = []
    for kinds in (("audio",), ("video",), ("audio", "video", "data"), ("data",)):
        pc = RTCPeerConnection()
        for kind in kinds:
            if kind == "data":
                pc.createDataChannel("text")
            else:
                pc.addTransceiver(kind, direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        await pc.close()
    return offers


def mangle(sdp: str, rng: random.Random) -> str:
    lines = sdp.strip().split("\r\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        move = rng.randrange(9)
        if move == 0:
            del lines[i]
        elif move == 1:
            lines.insert(rng.randrange(len(lines)), lines[i])
        elif move == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif move == 3 and "=" in lines[i]:
            key, _, value = lines[i].partition("=")
            cut = value.split(" ")
            cut[rng.randrange(len(cut))] = rng.choice(GARBAGE)
            lines[i] = f"{key}={' '.join(cut)}"
        elif move == 4:
            lines = (
                [line for line in lines if not line.startswith("a=mid:")]
                if rng.random() < 0.5
                else [line.replace("a=mid:0", "a=mid:7") for line in lines]
            )
        elif move == 5:
            lines = [
                line.replace("BUNDLE", rng.choice(["BUNDLE 9", "BUNDLE", "LS"]), 1)
                if line.startswith("a=group:")
                else line
                for line in lines
            ]
        elif move == 6:
            m = [k for k, line in enumerate(lines) if line.startswith("m=")]
            if m:
                lines = lines[: rng.choice(m)]
        elif move == 7:
            lines = [
                line
                for line in lines
                if not line.startswith(
                    rng.choice(
                        [
                            "a=ice-ufrag",
                            "a=ice-pwd",
                            "a=fingerprint",
                            "a=setup",
                            "a=rtpmap",
                            "c=",
                            "a=sctp-port",
                            "a=candidate",
                        ]
                    )
                )
            ]
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    return "\r\n".join(lines) + "\r\n"


async def test_mangled_offers_get_4xx_and_leave_nothing(rtc_url, no_server_errors):  # noqa: F811
    rng = random.Random(SEED)
    offers = await base_offers()
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as live:
        await collect(live.audio_frames, 10)
        statuses: dict[int, int] = {}
        for n in range(OFFERS):
            stream = rng.choice(["echo", "flip", "av", "video-send"])
            body = {
                "type": "offer",
                "sdp": mangle(rng.choice(offers), rng),
                "webrtc_id": f"fuzz-{n}",
            }
            status, reply = await http_json(f"{rtc_url}{stream}/webrtc/offer", body)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (status, reply, body["sdp"])
            if status == 200:  # aiortc took it: hang up at once
                await http_json(
                    f"{rtc_url}{stream}/webrtc/offer",
                    {"type": "close", "webrtc_id": body["webrtc_id"], "token": reply.get("token")},
                )
            else:
                assert reply["status"] == "failed" and reply["meta"]["error"], reply
        assert set(statuses) - {200}, statuses  # the mangling did refuse offers
        # The live session did not notice: it still echoes.
        await collect(live.audio_frames, 10)
    live = StreamSession.objects.filter(
        webrtc_id__startswith="fuzz-", state__in=["new", "connecting", "connected"]
    )
    for _ in range(200):  # closing sessions write their record last
        if not manager().sessions and not await live.aexists():
            break
        await asyncio.sleep(0.05)
    assert not manager().sessions
    assert not [r.webrtc_id async for r in live]


def many_sections(sdp: str, copies: int) -> str:
    """A real offer whose first media section is repeated with fresh mids (a bundle of
    hundreds of tracks, under the size limit)."""
    head, *sections = sdp.split("\r\nm=")
    first = "m=" + sections[0]
    extra = [first.replace("a=mid:0", f"a=mid:x{i}") for i in range(copies)]
    return "\r\n".join([head, *("m=" + s for s in sections), *extra]).rstrip("\r\n") + "\r\n"


async def test_an_offer_of_hundreds_of_sections_is_refused_before_aiortc_reads_it(
    rtc_url,
    no_server_errors,  # noqa: F811
):
    offer = (await base_offers())[0]
    sections = offer.count("\r\nm=")
    # At the limit the offer is read (and answered, or refused for other reasons: never
    # for its section count); past it, refused with the reason.
    assert read_offer(many_sections(offer, MAX_MEDIA_SECTIONS - sections)).kinds
    with pytest.raises(SignalingError, match=f"at most {MAX_MEDIA_SECTIONS} are read"):
        read_offer(many_sections(offer, MAX_MEDIA_SECTIONS - sections + 1))
    status, reply = await http_json(
        f"{rtc_url}echo/webrtc/offer",
        {"type": "offer", "sdp": many_sections(offer, 200), "webrtc_id": "fuzz-sections"},
    )
    assert status == 400, reply
    assert reply["meta"]["error"] == "invalid_offer"
    assert "m= sections" in reply["meta"]["message"]
    # Refused before aiortc: the record, if admission wrote one, is closed, and no session
    # is left in the table.
    assert not await StreamSession.objects.filter(
        webrtc_id="fuzz-sections", state__in=["new", "connecting", "connected"]
    ).aexists()
    assert "fuzz-sections" not in manager().sessions
