"""ICE settings aiortc and aioice do not expose, and trickled candidates.

``parse_candidate`` / ``local_candidates`` turn trickle messages into aiortc
candidates and back; they need no Django, so the Python client uses them too.

aiortc uses a public STUN server when a peer connection is built without ICE
servers, and aioice never gathers host candidates on loopback. A server in a
container, an offline machine or a test on 127.0.0.1 needs both under its
control, so every peer connection of this package is built here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc.rtcconfiguration
import aiortc.rtcicetransport
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError

logger = logging.getLogger(__name__)

_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None
_host_addresses: list[str] | None = None


def install_host_addresses(addresses: list[str] | None) -> None:
    """Gather host candidates on exactly ``addresses`` (None restores aioice's choice).

    This replaces ``aioice.ice.get_host_addresses`` for the process; the seam is
    checked so that a change inside aioice fails loudly instead of silently
    gathering on the wrong interfaces.
    """
    global _original_get_host_addresses, _host_addresses
    current = getattr(aioice.ice, "get_host_addresses", None)
    if current is None or not callable(current):
        raise RuntimeError(
            "aioice.ice.get_host_addresses is gone: this aioice version is not supported "
            "by RTCSTREAM['ICE_HOST_ADDRESSES']"
        )
    if _original_get_host_addresses is None:
        _original_get_host_addresses = current
    _host_addresses = list(addresses) if addresses is not None else None
    if _host_addresses is None:
        aioice.ice.get_host_addresses = _original_get_host_addresses
    else:
        aioice.ice.get_host_addresses = _configured_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _host_addresses is not None
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def ice_servers(entries: list[dict[str, Any]] | None) -> list[RTCIceServer]:
    """Convert ``[{"urls", "username", "credential"}]`` to aiortc servers; never None."""
    servers = []
    for entry in entries or []:
        servers.append(
            RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return servers


TRANSPORT_POLICIES = ("all", "relay")


def relay_only_supported() -> bool:
    """Whether this aiortc can make a peer connection relay-only.

    aiortc 1.16 added ``RTCConfiguration.iceTransportPolicy``, which it hands to
    aioice (0.12 and later): with ``relay`` aioice binds no host socket and asks no
    STUN server, so the only local candidates are the TURN allocations. Older aiortc
    has no such option, and aioice 0.10 with ``TransportPolicy.RELAY`` still
    offered server-reflexive candidates and kept its host sockets in the checks.
    """
    return hasattr(aiortc.rtcconfiguration, "RTCIceTransportPolicy")


def rtc_configuration(
    entries: list[dict[str, Any]] | None, *, policy: str = "all"
) -> RTCConfiguration:
    """An ``RTCConfiguration`` that always names its ICE servers (possibly none).

    Args:
        entries: ``[{"urls", "username", "credential"}]``.
        policy: ``"all"`` or ``"relay"`` (the W3C ``iceTransportPolicy``).

    Raises:
        ValueError: an unknown policy.
        RuntimeError: ``"relay"`` with an aiortc that cannot honour it (older than
            1.16): a peer connection that silently used host candidates would
            defeat the point of asking for relay-only.
    """
    if policy not in TRANSPORT_POLICIES:
        raise ValueError(f"iceTransportPolicy must be 'all' or 'relay', got {policy!r}")
    servers = ice_servers(entries)
    if policy == "all":
        return RTCConfiguration(iceServers=servers)
    if not relay_only_supported():
        raise RuntimeError(
            "iceTransportPolicy 'relay' needs aiortc 1.16 or later "
            f"(installed: {getattr(aiortc, '__version__', 'unknown')})"
        )
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


def server_configuration(stream: Any) -> RTCConfiguration:
    """The ``RTCConfiguration`` of the server's peer connection for one session.

    The stream's ``server_rtc_configuration`` (``iceServers``, optionally
    ``iceTransportPolicy``) wins; otherwise ``SERVER_ICE_SERVERS`` (a list, or a
    dotted path / callable returning one, called now so that minted TURN
    credentials are fresh for every session) and ``SERVER_ICE_TRANSPORT_POLICY``.
    """
    from django.utils.module_loading import import_string

    from django_rtcstream.conf import rtc_settings

    own = getattr(stream, "server_rtc_configuration", None)
    if own is not None:
        return rtc_configuration(
            own.get("iceServers"),
            policy=own.get("iceTransportPolicy") or rtc_settings.SERVER_ICE_TRANSPORT_POLICY,
        )
    servers: Any = rtc_settings.SERVER_ICE_SERVERS
    if isinstance(servers, str):
        servers = import_string(servers)
    if callable(servers):
        servers = servers()
    return rtc_configuration(servers, policy=rtc_settings.SERVER_ICE_TRANSPORT_POLICY)


def selected_pair_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local, remote) candidate types of the pair ICE selected, or None before that.

    Reads aioice's nominated pair (aiortc exposes no selected-pair API): ``("relay",
    "relay")`` means the media of this peer connection goes through TURN both ways.
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        connection = getattr(transport.transport, "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1)
        if pair is not None:
            return (pair.local_candidate.type, pair.remote_candidate.type)
    return None


_port_range: tuple[int, int] | None = None
_binding: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "rtcstream_udp_ports", default=None
)


class PortRangeConnection(aioice.ice.Connection):
    """An aioice connection that binds its host sockets within ``UDP_PORT_RANGE``.

    aioice binds host candidates to port 0 (any port). While this connection
    gathers, its task carries the range in a context variable and the loop's
    ``create_datagram_endpoint`` picks a free port in it instead.
    """

    async def get_component_candidates(  # type: ignore[override]
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> Any:
        if _port_range is None:
            return await super().get_component_candidates(component, addresses, timeout)
        _wrap_loop(asyncio.get_running_loop())
        token = _binding.set(_port_range)
        try:
            return await super().get_component_candidates(component, addresses, timeout)
        finally:
            _binding.reset(token)


def _wrap_loop(loop: asyncio.AbstractEventLoop) -> None:
    if getattr(loop, "_rtcstream_port_range", False):
        return
    original = loop.create_datagram_endpoint

    async def create_datagram_endpoint(factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        ports = _binding.get()
        if ports is None or not local_addr or local_addr[1] != 0:
            return await original(factory, local_addr=local_addr, **kwargs)
        candidates = list(range(ports[0], ports[1] + 1))
        random.shuffle(candidates)
        for port in candidates:
            try:
                return await original(factory, local_addr=(local_addr[0], port), **kwargs)
            except OSError:
                continue
        raise OSError(f"no free UDP port in {ports[0]}-{ports[1]} on {local_addr[0]}")

    try:
        loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
        loop._rtcstream_port_range = True  # type: ignore[attr-defined]
    except AttributeError as exc:  # e.g. uvloop's loop has fixed attributes
        raise RuntimeError(
            "RTCSTREAM['UDP_PORT_RANGE'] needs asyncio's own event loop "
            f"({type(loop).__name__} cannot be configured)"
        ) from exc


def install_port_range(ports: tuple[int, int] | list[int] | None) -> None:
    """Bind host candidates within ``ports`` (inclusive); None restores any port.

    Checked seam: aiortc must still build its ICE connection from
    ``aiortc.rtcicetransport.Connection`` and aioice must still gather in
    ``Connection.get_component_candidates``.
    """
    global _port_range
    if not hasattr(aioice.ice.Connection, "get_component_candidates") or not hasattr(
        aiortc.rtcicetransport, "Connection"
    ):
        raise RuntimeError("aiortc/aioice internals moved: UDP_PORT_RANGE is not supported here")
    if ports is not None:
        low, high = int(ports[0]), int(ports[1])
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"UDP_PORT_RANGE must be (low, high) within 1024-65535, got {ports!r}")
        _port_range = (low, high)
        aiortc.rtcicetransport.Connection = PortRangeConnection  # type: ignore[misc]
    else:
        _port_range = None


def parse_candidate(candidate: dict[str, Any] | str | None) -> Any:
    """A trickled candidate (Chrome or Firefox style) -> aiortc ``RTCIceCandidate``.

    None or an empty string means end-of-candidates (returns None).
    Raises ``SignalingError(ErrorCode.INVALID_CANDIDATE)`` for anything unreadable.
    """
    if candidate is None:
        return None
    if isinstance(candidate, str):
        candidate = {"candidate": candidate, "sdpMLineIndex": 0}
    if not isinstance(candidate, dict):
        raise SignalingError(ErrorCode.INVALID_CANDIDATE, "candidate must be an object or null.")
    text = candidate.get("candidate")
    if text in (None, ""):
        return None
    if not isinstance(text, str):
        raise SignalingError(ErrorCode.INVALID_CANDIDATE, "candidate.candidate must be a string.")
    body = text.strip()
    if body.startswith("a="):
        body = body[2:]
    if body.startswith("candidate:"):
        body = body[len("candidate:") :]
    bits = body.split()
    if len(bits) < 8 or bits[6] != "typ":
        raise SignalingError(
            ErrorCode.INVALID_CANDIDATE,
            "candidate is not an ICE candidate line ('candidate:<foundation> <component> "
            "<transport> <priority> <address> <port> typ <type> ...').",
        )
    try:
        parsed = candidate_from_sdp(body)
    except (ValueError, AssertionError) as exc:
        raise SignalingError(ErrorCode.INVALID_CANDIDATE, f"Unreadable candidate: {exc}") from exc
    parsed.sdpMid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    parsed.sdpMLineIndex = index if isinstance(index, int) else None
    if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
        parsed.sdpMLineIndex = 0
    return parsed


def local_candidates(pc: RTCPeerConnection) -> list[dict[str, Any]]:
    """The server's candidates as trickle messages (aiortc puts them all in the answer)."""
    out: list[dict[str, Any]] = []
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        for c in transport.transport.iceGatherer.getLocalCandidates():
            out.append(
                {
                    "candidate": "candidate:" + candidate_to_sdp(c),
                    "sdpMid": transceiver.mid,
                    "sdpMLineIndex": transceiver._get_mline_index(),
                }
            )
        break  # bundled: one transport's candidates serve every section
    return out
