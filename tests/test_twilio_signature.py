"""Twilio request signatures, checked against twilio-python's published test vectors.

The vectors (token, URL, parameters, expected signatures) are those of
twilio-python's tests/unit/test_request_validator.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.http import QueryDict
from django.test import override_settings

from django_rtcstream.telephone.twilio import signature, valid_signature
from tests.settings import RTCSTREAM

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
REPEATED = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
REPEATED_EXPECTED = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_signature_of_plain_parameters():
    assert signature(URL, PARAMS, TOKEN) == EXPECTED
    assert valid_signature(URL, PARAMS, EXPECTED, TOKEN)
    assert not valid_signature(URL, {**PARAMS, "Digits": "1235"}, EXPECTED, TOKEN)
    assert not valid_signature(URL, PARAMS, None, TOKEN)
    assert not valid_signature(
        URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8\u00e9", TOKEN
    )  # no TypeError


@pytest.mark.parametrize(
    "params",
    [
        QueryDict(REPEATED),
        {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]},
    ],
)
def test_repeated_parameters_sign_every_value_sorted_once(params):
    """Keys sorted, each key's distinct values sorted: 'Digits1234Digits5678Sid...'."""
    assert signature(URL, params, TOKEN) == REPEATED_EXPECTED
    assert valid_signature(URL, params, REPEATED_EXPECTED, TOKEN)
    assert not valid_signature(
        URL, QueryDict("Sid=CA123&SidAccount=AC123&Digits=1234"), REPEATED_EXPECTED, TOKEN
    )


@pytest.mark.parametrize(
    "url, expected",
    [
        (URL.replace(".com", ".com:1234"), EXPECTED),  # signed without the port
        (URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
        (URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
        (URL.replace(".com", ".com:1234").replace("https", "http"), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_the_url_is_tried_with_and_without_its_port(url, expected):
    assert valid_signature(url, PARAMS, expected, TOKEN)


def test_a_json_body_is_signed_through_its_sha256_in_the_query():
    url = f"{URL}&bodySHA256={BODY_HASH}"
    assert valid_signature(url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN, body=BODY.encode())
    assert not valid_signature(url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN, body=b"{}")
    assert not valid_signature(f"{URL}&bodySHA256=%C3%A9", {}, "x", TOKEN, body=b"{}")


# -- the webhook, end to end ----------------------------------------------------------

PUBLIC = "https://phone.example.com"


def reference_signature(url: str, pairs: list[tuple[str, str]], token: str) -> str:
    """Twilio's documented algorithm, spelled out: URL, then each name in sorted order
    followed by each of its distinct values in sorted order; HMAC-SHA1, base64."""
    payload = url
    for name in sorted({n for n, _ in pairs}):
        for value in sorted({v for n, v in pairs if n == name}):
            payload += name + value
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def post(url: str, body: bytes, content_type: str, sig: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "X-Twilio-Signature": sig},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.django_db(transaction=True)
async def test_the_webhook_accepts_what_twilio_signs(rtc_url):
    path = "/rtc/echo/telephone/incoming"
    pairs = [("CallSid", "CA9"), ("From", "+15550100"), ("Digits", "5678"), ("Digits", "1234")]
    form = urllib.parse.urlencode(pairs).encode()
    body = json.dumps({"event": "call"}).encode()
    query = f"?bodySHA256={hashlib.sha256(body).hexdigest()}"
    with override_settings(
        RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TOKEN, "TELEPHONE_PUBLIC_URL": PUBLIC}
    ):
        cases = [
            (
                rtc_url + path[5:],
                form,
                "application/x-www-form-urlencoded",
                reference_signature(PUBLIC + path, pairs, TOKEN),
                200,
            ),
            (
                rtc_url + path[5:],
                form,
                "application/x-www-form-urlencoded",
                reference_signature(PUBLIC + ":443" + path, pairs, TOKEN),
                200,
            ),
            (
                rtc_url + path[5:],
                form,
                "application/x-www-form-urlencoded",
                reference_signature(PUBLIC + path, pairs[:3], TOKEN),
                403,
            ),
            (
                rtc_url + path[5:] + query,
                body,
                "application/json",
                reference_signature(PUBLIC + path + query, [], TOKEN),
                200,
            ),
            (
                rtc_url + path[5:] + query,
                b'{"event": "forged"}',
                "application/json",
                reference_signature(PUBLIC + path + query, [], TOKEN),
                403,
            ),
        ]
        for url, data, content_type, sig, status in cases:
            got, reply = await asyncio.to_thread(post, url, data, content_type, sig)
            assert got == status, (url, content_type, reply)
            if status == 200:
                assert "<Stream url=" in reply
            else:
                assert json.loads(reply)["meta"]["error"] == "invalid_signature"
