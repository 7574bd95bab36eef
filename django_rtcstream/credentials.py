"""TURN credentials with FastRTC's names (``fastrtc.credentials``).

Each helper returns an RTC configuration, ``{"iceServers": [...]}``, ready for
``Stream(rtc_configuration=...)`` or ``server_rtc_configuration=``. Pass the
async function itself as ``rtc_configuration`` to give each client fresh,
short-lived credentials::

    Stream(handler, modality="audio", mode="send-receive",
           rtc_configuration=get_cloudflare_turn_credentials_async,
           server_rtc_configuration=get_cloudflare_turn_credentials(ttl=360_000))

Requests go out with the standard library (``urllib.request``); the async
variants run them in a worker thread, or on an ``httpx.AsyncClient`` passed as
``client``. Twilio's REST API is called directly, so the ``twilio`` package is
not needed. The base URLs below are module attributes, read at each call, so
tests (or a proxy) can point them elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any, Literal, Protocol

from django_rtcstream import __version__
from django_rtcstream.exceptions import RtcStreamError

__all__ = [
    "TurnCredentialsError",
    "get_cloudflare_turn_credentials",
    "get_cloudflare_turn_credentials_async",
    "get_hf_turn_credentials",
    "get_hf_turn_credentials_async",
    "get_turn_credentials",
    "get_turn_credentials_async",
    "get_twilio_turn_credentials",
]

#: FastRTC's TURN endpoint, backed by Cloudflare, that accepts a Hugging Face token.
CLOUDFLARE_FASTRTC_TURN_URL = "https://turn.fastrtc.org/credentials"
#: Cloudflare Realtime TURN keys API; ``/{key_id}/credentials/generate-ice-servers`` is added.
CLOUDFLARE_TURN_API_URL = "https://rtc.live.cloudflare.com/v1/turn/keys"
#: Twilio REST API; ``/Accounts/{sid}/Tokens.json`` is added.
TWILIO_API_URL = "https://api.twilio.com/2010-04-01"
#: Seconds to wait for a credentials service (httpx's default, as FastRTC got).
REQUEST_TIMEOUT = 5.0

RTCConfig = dict[str, Any]


class HTTPResponse(Protocol):
    """What the credential helpers read of an answer (an ``httpx.Response`` has it)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...


class AsyncHTTPClient(Protocol):
    """The ``client=`` of the async helpers: an ``httpx.AsyncClient``, or anything with
    its ``request`` method."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
    ) -> HTTPResponse: ...


class TurnCredentialsError(RtcStreamError):
    """Raised when a credentials service cannot be reached or answers with an error.

    ``status`` is the HTTP status (None when no answer came) and ``body`` the
    answer's text.
    """

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class _Call:
    """One prepared request and how to turn its JSON answer into an RTC configuration."""

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None = None,
        parse: Callable[[Any], RTCConfig] | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = {
            "Accept": "application/json",
            "User-Agent": f"django-rtcstream/{__version__}",
            **headers,
        }
        self.body = body
        self.parse = parse or _ice_servers

    def answer(self, status: int, text: str) -> RTCConfig:
        if not 200 <= status < 300:
            raise TurnCredentialsError(
                f"Failed to get TURN credentials: {status} {text}", status=status, body=text
            )
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        try:
            return self.parse(data)
        except (KeyError, TypeError):
            raise TurnCredentialsError(
                f"Unexpected answer from {self.url}: {text[:200]}", status=status, body=text
            ) from None

    def send(self) -> RTCConfig:
        request = urllib.request.Request(
            self.url, data=self.body, headers=self.headers, method=self.method
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except OSError as error:  # URLError, refused connections and timeouts
            raise TurnCredentialsError(
                f"Failed to get TURN credentials from {self.url}: {error}"
            ) from error
        return self.answer(status, raw.decode("utf-8", "replace"))

    async def asend(self, client: AsyncHTTPClient | None = None) -> RTCConfig:
        if client is None:
            return await asyncio.to_thread(self.send)
        # An httpx.AsyncClient (or anything with its ``request`` method); its own
        # transport errors (httpx.ConnectError...) reach the caller unchanged.
        response = await client.request(
            self.method,
            self.url,
            headers=self.headers,
            content=self.body,
            timeout=REQUEST_TIMEOUT,
        )
        return self.answer(response.status_code, response.text)


def _ice_servers(data: Any) -> RTCConfig:
    if not isinstance(data, dict) or not isinstance(data["iceServers"], list):
        raise TypeError
    return data


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _hf_call(token: str | None, ttl: int) -> _Call:
    if token is None:
        token = _env("HF_TOKEN")
    if not token:
        raise ValueError(
            "HF_TOKEN environment variable must be set or token must be provided "
            "to use get_hf_turn_credentials"
        )
    query = urllib.parse.urlencode({"ttl": ttl})
    return _Call("GET", f"{CLOUDFLARE_FASTRTC_TURN_URL}?{query}", _bearer(token))


def _cloudflare_call(
    turn_key_id: str | None, turn_key_api_token: str | None, hf_token: str | None, ttl: int
) -> _Call:
    keys_given = turn_key_id is not None and turn_key_api_token is not None
    if hf_token is None and not keys_given:
        hf_token = _env("HF_TOKEN")
    if hf_token:
        return _hf_call(hf_token, ttl)
    if turn_key_id is None:
        turn_key_id = _env("CLOUDFLARE_TURN_KEY_ID")
    if turn_key_api_token is None:
        turn_key_api_token = _env("CLOUDFLARE_TURN_KEY_API_TOKEN")
    if not turn_key_id or not turn_key_api_token:
        raise ValueError(
            "HF_TOKEN or CLOUDFLARE_TURN_KEY_ID and CLOUDFLARE_TURN_KEY_API_TOKEN must be set "
            "to use get_cloudflare_turn_credentials"
        )
    key = urllib.parse.quote(turn_key_id, safe="")
    return _Call(
        "POST",
        f"{CLOUDFLARE_TURN_API_URL}/{key}/credentials/generate-ice-servers",
        {**_bearer(turn_key_api_token), "Content-Type": "application/json"},
        json.dumps({"ttl": ttl}).encode(),
    )


def _twilio_ice_servers(data: Any) -> RTCConfig:
    servers = data["ice_servers"]
    if not isinstance(servers, list):
        raise TypeError
    return {"iceServers": servers, "iceTransportPolicy": "relay"}


def _twilio_call(twilio_sid: str | None, twilio_token: str | None) -> _Call:
    if twilio_sid is None:
        twilio_sid = _env("TWILIO_ACCOUNT_SID")
    if twilio_token is None:
        twilio_token = _env("TWILIO_AUTH_TOKEN")
    if not twilio_sid or not twilio_token:
        raise ValueError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set or twilio_sid and "
            "twilio_token must be provided to use get_twilio_turn_credentials"
        )
    basic = base64.b64encode(f"{twilio_sid}:{twilio_token}".encode()).decode("ascii")
    sid = urllib.parse.quote(twilio_sid, safe="")
    return _Call(
        "POST",
        f"{TWILIO_API_URL}/Accounts/{sid}/Tokens.json",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        b"",
        parse=_twilio_ice_servers,
    )


def _deprecated(name: str, replacement: str) -> None:
    warnings.warn(f"{name} is deprecated. Use {replacement} instead.", UserWarning, stacklevel=3)


def get_hf_turn_credentials(token: str | None = None, ttl: int = 600) -> RTCConfig:
    """TURN credentials from FastRTC's endpoint for a Hugging Face token (deprecated).

    Use ``get_cloudflare_turn_credentials``, which takes the same token as ``hf_token``.

    Args:
        token: a Hugging Face token; ``HF_TOKEN`` from the environment when None.
        ttl: how long the credentials stay valid, in seconds.

    Returns:
        ``{"iceServers": [...]}``.

    Raises:
        ValueError: no token was given and ``HF_TOKEN`` is not set.
        TurnCredentialsError: the service could not be reached or refused.
    """
    _deprecated("get_hf_turn_credentials", "get_cloudflare_turn_credentials")
    return _hf_call(token, ttl).send()


async def get_hf_turn_credentials_async(
    token: str | None = None, ttl: int = 600, client: AsyncHTTPClient | None = None
) -> RTCConfig:
    """``get_hf_turn_credentials`` as a coroutine (deprecated).

    ``client`` is an optional ``httpx.AsyncClient`` to send the request with;
    without one the request runs in a worker thread.
    """
    _deprecated("get_hf_turn_credentials_async", "get_cloudflare_turn_credentials_async")
    return await _hf_call(token, ttl).asend(client)


def get_cloudflare_turn_credentials(
    turn_key_id: str | None = None,
    turn_key_api_token: str | None = None,
    hf_token: str | None = None,
    ttl: int = 600,
) -> RTCConfig:
    """TURN credentials from Cloudflare, with TURN key credentials or a Hugging Face token.

    A Hugging Face token (``hf_token``, else ``HF_TOKEN`` unless both key
    arguments are given) goes to FastRTC's Cloudflare-backed endpoint and wins
    over keys. Otherwise Cloudflare's TURN keys API is called with
    ``turn_key_id`` and ``turn_key_api_token``, each read from
    ``CLOUDFLARE_TURN_KEY_ID`` / ``CLOUDFLARE_TURN_KEY_API_TOKEN`` when None.

    Args:
        turn_key_id: a Cloudflare TURN key id.
        turn_key_api_token: that key's API token.
        hf_token: a Hugging Face token; pass ``""`` to ignore ``HF_TOKEN``.
        ttl: how long the credentials stay valid, in seconds.

    Returns:
        ``{"iceServers": [...]}`` as the service answered it.

    Raises:
        ValueError: neither a Hugging Face token nor both key values are available.
        TurnCredentialsError: the service could not be reached or answered
            with an error status.
    """
    return _cloudflare_call(turn_key_id, turn_key_api_token, hf_token, ttl).send()


async def get_cloudflare_turn_credentials_async(
    turn_key_id: str | None = None,
    turn_key_api_token: str | None = None,
    hf_token: str | None = None,
    ttl: int = 600,
    client: AsyncHTTPClient | None = None,
) -> RTCConfig:
    """``get_cloudflare_turn_credentials`` as a coroutine.

    ``client`` is an optional ``httpx.AsyncClient`` to send the request with;
    without one the request runs in a worker thread, so the event loop is
    never blocked.
    """
    call = _cloudflare_call(turn_key_id, turn_key_api_token, hf_token, ttl)
    return await call.asend(client)


def get_twilio_turn_credentials(
    twilio_sid: str | None = None, twilio_token: str | None = None
) -> RTCConfig:
    """TURN credentials from Twilio's Network Traversal Service.

    Creates a token through Twilio's REST API (``POST
    /2010-04-01/Accounts/{sid}/Tokens.json`` with basic auth); the ``twilio``
    package is not needed.

    Args:
        twilio_sid: the account SID; ``TWILIO_ACCOUNT_SID`` when None.
        twilio_token: the auth token; ``TWILIO_AUTH_TOKEN`` when None.

    Returns:
        ``{"iceServers": [...], "iceTransportPolicy": "relay"}``.

    Raises:
        ValueError: the SID or the token is not available.
        TurnCredentialsError: Twilio could not be reached or refused.
    """
    return _twilio_call(twilio_sid, twilio_token).send()


_METHODS = {
    "hf": ("token", "ttl"),
    "cloudflare": ("turn_key_id", "turn_key_api_token", "hf_token", "ttl"),
    "twilio": ("twilio_sid", "twilio_token"),
}


def _pick(method: str, kwargs: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    if method not in _METHODS:
        raise ValueError("Invalid method. Must be 'hf', 'twilio', or 'cloudflare'")
    if method == "hf":
        warnings.warn(
            "Method 'hf' is deprecated. Use 'cloudflare' instead.", UserWarning, stacklevel=3
        )
    names = _METHODS[method] + extra
    return {k: v for k, v in kwargs.items() if k in names}


def get_turn_credentials(
    method: Literal["hf", "twilio", "cloudflare"] = "cloudflare", **kwargs: Any
) -> RTCConfig:
    """Call ``get_{method}_turn_credentials`` with the keyword arguments it takes.

    Arguments meant for another method are ignored, as in FastRTC.

    Raises:
        ValueError: ``method`` is not ``"cloudflare"``, ``"hf"`` or ``"twilio"``.
    """
    chosen = _pick(method, kwargs)
    if method == "hf":
        return _hf_call(chosen.get("token"), chosen.get("ttl", 600)).send()
    if method == "twilio":
        return get_twilio_turn_credentials(**chosen)
    return get_cloudflare_turn_credentials(**chosen)


async def get_turn_credentials_async(
    method: Literal["hf", "twilio", "cloudflare"] = "cloudflare", **kwargs: Any
) -> RTCConfig:
    """``get_turn_credentials`` as a coroutine; ``client`` is passed on where it applies.

    Twilio works here too (its request runs in a worker thread).
    """
    chosen = _pick(method, kwargs, extra=("client",))
    if method == "hf":
        call = _hf_call(chosen.get("token"), chosen.get("ttl", 600))
        return await call.asend(chosen.get("client"))
    if method == "twilio":
        return await _twilio_call(chosen.get("twilio_sid"), chosen.get("twilio_token")).asend()
    return await get_cloudflare_turn_credentials_async(**chosen)
