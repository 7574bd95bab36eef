"""TURN credential helpers against a stand-in HTTP server on 127.0.0.1 (never the real services)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from django_rtcstream import credentials
from django_rtcstream.credentials import (
    TurnCredentialsError,
    get_cloudflare_turn_credentials,
    get_cloudflare_turn_credentials_async,
    get_hf_turn_credentials,
    get_hf_turn_credentials_async,
    get_turn_credentials,
    get_turn_credentials_async,
    get_twilio_turn_credentials,
)

ICE = {
    "iceServers": [
        {"urls": ["stun:stun.example.test:3478"]},
        {"urls": ["turn:turn.example.test:3478?transport=udp"], "username": "u", "credential": "c"},
    ]
}
TWILIO_ANSWER = {
    "account_sid": "AC123",
    "ttl": "86400",
    "username": "u",
    "password": "p",
    "ice_servers": [
        {"url": "stun:global.stun.twilio.com:3478", "urls": "stun:global.stun.twilio.com:3478"},
        {
            "url": "turn:global.turn.twilio.com:3478?transport=udp",
            "urls": "turn:global.turn.twilio.com:3478?transport=udp",
            "username": "u",
            "credential": "p",
        },
    ],
}
ENV = [
    "HF_TOKEN",
    "CLOUDFLARE_TURN_KEY_ID",
    "CLOUDFLARE_TURN_KEY_API_TOKEN",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
]


class StandIn:
    """What the stand-in service received, and what it answers next."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requests: list[dict] = []
        self.status = 200
        self.body: bytes = json.dumps(ICE).encode()

    def reply(self, status: int, body: object) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()

    @property
    def last(self) -> dict:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@pytest.fixture
def service(monkeypatch):
    """A local HTTP server standing in for Cloudflare, FastRTC's endpoint and Twilio."""
    state: StandIn

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            url = urllib.parse.urlsplit(self.path)
            state.requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": urllib.parse.parse_qs(url.query),
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length),
                }
            )
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_GET = do_POST = _record

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state = StandIn(f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(credentials, "CLOUDFLARE_FASTRTC_TURN_URL", f"{state.base}/credentials")
    monkeypatch.setattr(credentials, "CLOUDFLARE_TURN_API_URL", f"{state.base}/v1/turn/keys")
    monkeypatch.setattr(credentials, "TWILIO_API_URL", f"{state.base}/2010-04-01")
    for name in [*ENV, "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]:
        monkeypatch.delenv(name, raising=False)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def assert_cloudflare_request(request: dict, key_id: str, token: str, ttl: int) -> None:
    assert request["method"] == "POST"
    assert request["path"] == f"/v1/turn/keys/{key_id}/credentials/generate-ice-servers"
    assert request["headers"]["Authorization"] == f"Bearer {token}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"ttl": ttl}


def assert_hf_request(request: dict, token: str, ttl: int) -> None:
    assert request["method"] == "GET"
    assert request["path"] == "/credentials"
    assert request["query"] == {"ttl": [str(ttl)]}
    assert request["headers"]["Authorization"] == f"Bearer {token}"


# Cloudflare


def test_cloudflare_keys_post_the_ttl_and_return_the_ice_servers(service):
    assert get_cloudflare_turn_credentials("key-1", "secret", ttl=120) == ICE
    assert_cloudflare_request(service.last, "key-1", "secret", 120)
    assert service.last["headers"]["User-Agent"].startswith("django-rtcstream/")


def test_cloudflare_keys_come_from_the_environment(service, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_API_TOKEN", "env-secret")
    assert get_cloudflare_turn_credentials() == ICE
    assert_cloudflare_request(service.last, "env-key", "env-secret", 600)


def test_a_key_argument_fills_in_only_what_it_names(service, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_API_TOKEN", "env-secret")
    get_cloudflare_turn_credentials(turn_key_api_token="arg-secret")
    assert_cloudflare_request(service.last, "env-key", "arg-secret", 600)


def test_a_hugging_face_token_wins_over_keys(service, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_API_TOKEN", "env-secret")
    assert get_cloudflare_turn_credentials(hf_token="hf_abc", ttl=30) == ICE
    assert_hf_request(service.last, "hf_abc", 30)


def test_hf_token_from_the_environment_is_used_unless_keys_are_passed(service, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", " hf_env \n")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_API_TOKEN", "env-secret")
    get_cloudflare_turn_credentials()
    assert_hf_request(service.requests[-1], "hf_env", 600)
    get_cloudflare_turn_credentials("arg-key", "arg-secret")
    assert_cloudflare_request(service.requests[-1], "arg-key", "arg-secret", 600)
    get_cloudflare_turn_credentials(hf_token="")  # "" means: ignore HF_TOKEN
    assert_cloudflare_request(service.requests[-1], "env-key", "env-secret", 600)


def test_cloudflare_without_any_credentials_is_a_value_error(service, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")  # the token is still missing
    with pytest.raises(ValueError, match="CLOUDFLARE_TURN_KEY_API_TOKEN"):
        get_cloudflare_turn_credentials()
    assert service.requests == []


@pytest.mark.parametrize("hf", [False, True])
def test_an_error_status_raises_with_status_and_body(service, hf):
    service.reply(401, {"error": "bad token"})
    with pytest.raises(TurnCredentialsError) as caught:
        if hf:
            get_cloudflare_turn_credentials(hf_token="hf_abc")
        else:
            get_cloudflare_turn_credentials("key-1", "wrong")
    assert caught.value.status == 401
    assert json.loads(caught.value.body) == {"error": "bad token"}
    assert str(caught.value).startswith("Failed to get TURN credentials: 401")
    assert "wrong" not in str(caught.value)


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"ice": []}', b"[]"])
def test_an_answer_without_ice_servers_raises(service, body):
    service.reply(200, body)
    with pytest.raises(TurnCredentialsError, match="Unexpected answer") as caught:
        get_cloudflare_turn_credentials("key-1", "secret")
    assert caught.value.status == 200


def test_an_unreachable_service_raises(service, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setattr(
        credentials, "CLOUDFLARE_TURN_API_URL", f"http://127.0.0.1:{free_port()}/v1/turn/keys"
    )
    with pytest.raises(TurnCredentialsError, match="Failed to get TURN credentials from") as caught:
        get_cloudflare_turn_credentials("key-1", "secret")
    assert caught.value.status is None


async def test_cloudflare_async_sends_the_same_request_off_the_loop(service):
    assert await get_cloudflare_turn_credentials_async("key-1", "secret", ttl=90) == ICE
    assert_cloudflare_request(service.last, "key-1", "secret", 90)


async def test_cloudflare_async_raises_on_an_error_status(service):
    service.reply(503, b"down")
    with pytest.raises(TurnCredentialsError, match="503 down"):
        await get_cloudflare_turn_credentials_async(hf_token="hf_abc")


async def test_cloudflare_async_uses_a_given_httpx_client(service):
    httpx = pytest.importorskip("httpx")
    async with httpx.AsyncClient() as client:
        assert (
            await get_cloudflare_turn_credentials_async("key-1", "secret", ttl=45, client=client)
            == ICE
        )
        assert_cloudflare_request(service.requests[-1], "key-1", "secret", 45)
        service.reply(403, b"nope")
        with pytest.raises(TurnCredentialsError, match="403 nope"):
            await get_cloudflare_turn_credentials_async(hf_token="hf_abc", client=client)
        assert_hf_request(service.requests[-1], "hf_abc", 600)


async def test_a_stream_can_fetch_fresh_credentials_per_client(service, monkeypatch):
    from django_rtcstream import Stream
    from django_rtcstream.signaling.metadata import resolve_rtc_configuration

    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_ID", "env-key")
    monkeypatch.setenv("CLOUDFLARE_TURN_KEY_API_TOKEN", "env-secret")
    stream = Stream(
        lambda frame: frame,
        modality="video",
        mode="send-receive",
        rtc_configuration=get_cloudflare_turn_credentials_async,
    )
    assert await resolve_rtc_configuration(stream) == ICE
    assert await resolve_rtc_configuration(stream) == ICE
    assert len(service.requests) == 2


# Hugging Face (deprecated)


def test_hf_credentials_warn_and_get_with_the_token(service, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    with pytest.warns(UserWarning, match="get_hf_turn_credentials is deprecated") as record:
        assert get_hf_turn_credentials(ttl=10) == ICE
    assert record[0].filename == __file__
    assert_hf_request(service.last, "hf_env", 10)


async def test_hf_credentials_async(service):
    with pytest.warns(UserWarning, match="deprecated"):
        assert await get_hf_turn_credentials_async("hf_arg") == ICE
    assert_hf_request(service.last, "hf_arg", 600)


def test_hf_credentials_without_a_token_is_a_value_error(service):
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="HF_TOKEN"):
        get_hf_turn_credentials()


# Twilio


def test_twilio_creates_a_token_with_basic_auth(service):
    service.reply(201, TWILIO_ANSWER)
    assert get_twilio_turn_credentials("AC123", "auth-secret") == {
        "iceServers": TWILIO_ANSWER["ice_servers"],
        "iceTransportPolicy": "relay",
    }
    request = service.last
    assert request["method"] == "POST"
    assert request["path"] == "/2010-04-01/Accounts/AC123/Tokens.json"
    scheme, _, encoded = request["headers"]["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "AC123:auth-secret"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_twilio_credentials_come_from_the_environment(service, monkeypatch):
    service.reply(201, TWILIO_ANSWER)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "ACenv")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "env-token")
    get_twilio_turn_credentials()
    assert service.last["path"] == "/2010-04-01/Accounts/ACenv/Tokens.json"
    encoded = service.last["headers"]["Authorization"].split()[1]
    assert base64.b64decode(encoded).decode() == "ACenv:env-token"


def test_twilio_without_credentials_is_a_value_error(service, monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "ACenv")
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        get_twilio_turn_credentials()
    assert service.requests == []


def test_twilio_error_status_raises(service):
    service.reply(401, {"code": 20003, "message": "Authenticate"})
    with pytest.raises(TurnCredentialsError, match="401") as caught:
        get_twilio_turn_credentials("AC123", "wrong")
    assert json.loads(caught.value.body)["code"] == 20003


# Dispatchers


def test_get_turn_credentials_dispatches_and_drops_other_methods_arguments(service):
    assert (
        get_turn_credentials(turn_key_id="k", turn_key_api_token="t", ttl=5, twilio_sid="ignored")
        == ICE
    )
    assert_cloudflare_request(service.requests[-1], "k", "t", 5)
    with pytest.warns(UserWarning, match="Method 'hf' is deprecated"):
        get_turn_credentials("hf", token="hf_abc", hf_token="ignored")
    assert_hf_request(service.requests[-1], "hf_abc", 600)
    service.reply(201, TWILIO_ANSWER)
    assert (
        get_turn_credentials("twilio", twilio_sid="AC1", twilio_token="x", ttl=5)[
            "iceTransportPolicy"
        ]
        == "relay"
    )
    with pytest.raises(ValueError, match="Invalid method"):
        get_turn_credentials("stun")  # type: ignore[arg-type]


async def test_get_turn_credentials_async_dispatches_including_twilio(service):
    assert await get_turn_credentials_async(hf_token="hf_abc", ttl=7) == ICE
    assert_hf_request(service.requests[-1], "hf_abc", 7)
    service.reply(201, TWILIO_ANSWER)
    answer = await get_turn_credentials_async("twilio", twilio_sid="AC1", twilio_token="x")
    assert answer["iceServers"] == TWILIO_ANSWER["ice_servers"]
    with pytest.raises(ValueError, match="Invalid method"):
        await get_turn_credentials_async("stun")  # type: ignore[arg-type]
