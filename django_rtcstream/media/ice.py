"""ICE settings aiortc and aioice do not expose: servers and host addresses.

aiortc uses a public STUN server when a peer connection is built without ICE
servers, and aioice never gathers host candidates on loopback. A server in a
container, an offline machine or a test on 127.0.0.1 needs both under its
control, so every peer connection of this package is built here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

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


def rtc_configuration(entries: list[dict[str, Any]] | None) -> RTCConfiguration:
    """An ``RTCConfiguration`` that always names its ICE servers (possibly none)."""
    return RTCConfiguration(iceServers=ice_servers(entries))
