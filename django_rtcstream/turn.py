"""Time-limited TURN credentials in coturn's REST scheme, minted per session.

A TURN server started with ``use-auth-secret`` and ``static-auth-secret=<secret>``
(coturn; also eturnal, Pion, LiveKit) accepts any username of the form
``<expiry unix time>[:<label>]`` whose password is
``base64(HMAC-SHA1(secret, username))`` until that time has passed. Nothing is
stored on either side: the server that knows the secret mints credentials, and a
leaked credential stops working at its expiry instead of for ever.

Settings (``RTCSTREAM``): ``TURN_SECRET``, ``TURN_URLS``, ``TURN_TTL`` and
``TURN_RELAY_ONLY``. Offer TURN to clients with::

    RTCSTREAM = {
        "TURN_SECRET": os.environ["TURN_SECRET"],
        "TURN_URLS": ["turn:turn.example.com:3478?transport=udp",
                      "turn:turn.example.com:3478?transport=tcp"],
        "RTC_CONFIGURATION": "django_rtcstream.turn.rtc_configuration",
        # and, if the server's own peer connections should relay as well:
        "SERVER_ICE_SERVERS": "django_rtcstream.turn.server_ice_servers",
    }

Every ``GET <prefix>/<stream>/config`` (which each client reads before its
offer) calls ``rtc_configuration`` again, so every session gets its own
username and expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_rtcstream.conf import rtc_settings

__all__ = [
    "TurnCredentials",
    "ice_server",
    "mint_credentials",
    "rtc_configuration",
    "server_ice_servers",
]

# Schemes an ICE server URI may use (RFC 7064, RFC 7065).
URI_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class TurnCredentials:
    """One username/password pair and the unix time it stops being accepted."""

    username: str
    password: str
    expires: int


def mint_credentials(
    secret: str, *, ttl: int, label: str | None = None, now: float | None = None
) -> TurnCredentials:
    """Credentials valid for ``ttl`` seconds from ``now`` (default: the current time).

    Args:
        secret: the TURN server's ``static-auth-secret``.
        ttl: seconds the credentials stay valid. The TURN server checks them at
            every allocation refresh too, so a session lasting longer than ``ttl``
            loses its relay at the first refresh after the expiry.
        label: appended as ``:<label>`` (coturn's ``rest-api-separator``); it shows
            in the TURN server's logs. It must not contain ``:``.
        now: the time to count from (tests).

    Raises:
        ValueError: an empty secret, a ``ttl`` that is not a positive int, or a
            label containing ``:``.
    """
    if not secret:
        raise ValueError("the TURN secret is empty")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    if label is not None and ":" in label:
        raise ValueError("the label must not contain ':' (the REST scheme's separator)")
    expires = int(time.time() if now is None else now) + ttl
    username = f"{expires}:{label}" if label else str(expires)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), expires)


def ice_server(
    urls: list[str], secret: str, *, ttl: int, label: str | None = None
) -> dict[str, Any]:
    """One ``RTCIceServer`` dict (``urls``, ``username``, ``credential``) for ``urls``."""
    credentials = mint_credentials(secret, ttl=ttl, label=label)
    return {
        "urls": list(urls),
        "username": credentials.username,
        "credential": credentials.password,
    }


def _configured() -> tuple[list[str], str, int]:
    urls = rtc_settings.TURN_URLS
    secret = rtc_settings.TURN_SECRET
    if not secret:
        raise ImproperlyConfigured(
            "RTCSTREAM['TURN_SECRET'] is not set: django_rtcstream.turn needs the TURN "
            "server's static-auth-secret to mint credentials."
        )
    if not urls:
        raise ImproperlyConfigured(
            "RTCSTREAM['TURN_URLS'] is empty: list the TURN server's URIs, e.g. "
            "['turn:turn.example.com:3478?transport=udp']."
        )
    return list(urls), str(secret), int(rtc_settings.TURN_TTL)


def rtc_configuration() -> dict[str, Any]:
    """Client ICE configuration with fresh TURN credentials; for ``RTC_CONFIGURATION``.

    Each call mints a new username (expiry plus a random label), so the clients of
    two sessions never share one. With ``TURN_RELAY_ONLY`` the configuration also
    says ``"iceTransportPolicy": "relay"``, which browsers, the JS client and the
    Python client obey: they offer only relayed candidates.

    Raises:
        ImproperlyConfigured: ``TURN_SECRET`` or ``TURN_URLS`` is missing.
    """
    urls, secret, ttl = _configured()
    config: dict[str, Any] = {
        "iceServers": [ice_server(urls, secret, ttl=ttl, label=secrets.token_hex(4))]
    }
    if rtc_settings.TURN_RELAY_ONLY:
        config["iceTransportPolicy"] = "relay"
    return config


def server_ice_servers() -> list[dict[str, Any]]:
    """ICE servers for the server's own peer connections; for ``SERVER_ICE_SERVERS``.

    Minted per session like the clients'. aiortc uses only the first ``turn:`` URI
    it can (UDP or TCP; ``turns:`` over TCP), so list the UDP one first.

    Raises:
        ImproperlyConfigured: ``TURN_SECRET`` or ``TURN_URLS`` is missing.
    """
    urls, secret, ttl = _configured()
    return [ice_server(urls, secret, ttl=ttl, label="server-" + secrets.token_hex(4))]
