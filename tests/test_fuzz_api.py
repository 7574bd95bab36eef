"""Schemathesis against ``GET /rtc/openapi.json`` (issue 13): every operation, fixed seed.

The document is fetched from the real server (uvicorn in the test's loop) and
every operation in it gets schema-valid (positive) and schema-breaking
(negative) requests from ``tests/fuzz_api_client.py``, a process of its own,
while a live echo session plays in the server's loop. Every response must be
no 5xx, documented (status, content type, body schema), every 4xx JSON body
the app's failure body ``{"status": "failed", "meta": {"error": str,
"message": str, ...}}``, and every schema-breaking request refused with a 4xx.
Hypothesis runs derandomized: the same requests every run.

``FUZZ_API_EXAMPLES`` sets the examples per operation and mode (default 12),
``FUZZ_API_ONLY`` limits the run to operations whose label contains it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

from django_rtcstream.client import StreamClient
from tests.fuzzing import assert_nothing_left, live_echo
from tests.test_bad_input import no_server_errors  # noqa: F401  (fixture)

if importlib.util.find_spec("schemathesis") is None:  # found, not imported: it runs elsewhere
    pytest.skip("schemathesis is not installed (the test extra has it)", allow_module_level=True)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "12"))
ONLY = os.environ.get("FUZZ_API_ONLY")
ROOT = Path(__file__).resolve().parents[1]


async def fuzz(
    base: str, headers: dict[str, str], only: str | None, target: str, timeout: float = 240
) -> dict:
    args = [
        sys.executable,
        "-m",
        "tests.fuzz_api_client",
        base,
        "--examples",
        str(EXAMPLES),
        "--target",
        target,
    ]
    if only:
        args += ["--only", only]
    for key, value in headers.items():
        args += ["--header", f"{key}:{value}"]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


def in_flight(log: list, at: float, started: float) -> list:
    """The requests running at ``at`` seconds after ``started``."""
    return [
        (label, status, took)
        for t0, took, label, status in log
        if t0 - started - 0.05 <= at <= t0 - started + took + 0.05
    ]


async def run_against_server(
    rtc_url: str, asgi_server: str, headers: dict[str, str], only: str | None
) -> None:
    # The target: a live session that the input hook and ticket cases are aimed at.
    async with StreamClient(rtc_url, "tone") as target, live_echo(rtc_url) as echo:
        started = time.monotonic()
        outcome = await fuzz(asgi_server, headers, only, f"tone:{target.webrtc_id}:{target.token}")
        elapsed = time.monotonic() - started
        disturbed = echo.disturbed()
        summary = echo.summary()
        await assert_nothing_left({echo.webrtc_id, target.webrtc_id})
        await echo.client.hang_up()
        await target.hang_up()
    await assert_nothing_left()
    log = outcome["log"]
    print(
        f"\n{len(log)} requests over {len(outcome['counts'])} operations in {elapsed:.1f} s; "
        f"echo {summary}"
    )
    by_status: dict[str, dict[int, int]] = {}
    for _, _, label, status in log:
        by_status.setdefault(label, {}).setdefault(status, 0)
        by_status[label][status] += 1
    print({label: codes for label, codes in by_status.items() if 200 in codes})
    assert not outcome["failures"], "\n\n".join(
        f"== {label}\n" + "\n".join(msgs) for label, msgs in outcome["failures"].items()
    )
    if disturbed:
        stalls = {at: in_flight(log, at, echo.started) for at, *_ in summary["loop_stalls"]}
        raise AssertionError(f"{disturbed}; requests in flight during the stalls: {stalls}")
    if only is None:  # the cases aimed at the live target did reach it
        for label in [
            "POST /rtc/tone/input [positive]",
            "POST /rtc/{stream}/outputs/ticket [positive]",
        ]:
            assert by_status.get(label, {}).get(200), (label, by_status.get(label))


async def test_every_operation_anonymous(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    await run_against_server(rtc_url, asgi_server, {}, ONLY)


async def test_every_operation_as_staff(rtc_url, asgi_server, no_server_errors):  # noqa: F811
    """Staff pass the sessions API's permission check (HTTP basic auth, DRF's default)."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User

    await sync_to_async(User.objects.create_user)("fuzz", password="pw", is_staff=True)
    basic = base64.b64encode(b"fuzz:pw").decode()
    await run_against_server(
        rtc_url, asgi_server, {"Authorization": f"Basic {basic}"}, ONLY or "sessions"
    )


# -- what the fuzzing found, kept as plain regression tests -----------------------


@pytest.mark.parametrize(
    "path",
    [
        "/rtc/E9'\U000a5cc0%j\x87/config",  # schemathesis' first: not a slug, so no route matched
        "/rtc/a b/webrtc/offer",
        "/rtc/x.y/input",
        "/rtc/%C2%A5/outputs?webrtc_id=x",
        "/rtc/%C2%A5/outputs/ticket",
        "/rtc/%C2%A5/telephone/incoming",
    ],
)
def test_an_odd_stream_name_gets_the_json_404(path, client):
    """It got the project's HTML 404 page: a name that is no slug matched no route."""
    method = client.get if path.endswith("config") or "outputs?" in path else client.post
    response = method(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["meta"]["error"] == "unknown_stream"


@pytest.mark.parametrize("staff", [False, True])
@pytest.mark.parametrize(
    "path",
    ["/rtc/sessions/", "/rtc/sessions/0/", "/rtc/sessions/e3e70682-c209-1cac-a29f-6fbed82c07cd/"],
)
def test_the_sessions_api_refuses_with_the_failure_body(path, staff, client, django_user_model):
    """DRF answered ``{"detail": ...}`` (and an id that is no UUID the HTML 404 page),
    with none of it in the document; now the app's failure body, ``detail`` kept."""
    if staff:
        client.force_login(django_user_model.objects.create_user("s", is_staff=True))
    for response in [client.get(path), client.post(path + "close/")]:
        if path == "/rtc/sessions/" and response.request["REQUEST_METHOD"] == "POST":
            continue  # no such route
        if staff and path == "/rtc/sessions/":
            assert response.status_code == 200
            continue
        body = response.json()
        expected = (404, "not_found") if staff else (403, "not_authenticated")
        assert (response.status_code, body["status"], body["meta"]["error"]) == (
            expected[0],
            "failed",
            expected[1],
        ), body
        assert body["meta"]["message"] == body["detail"]


def test_the_document_says_what_the_hooks_accept(client):
    """Schema-valid requests the server refused: 440.5 for a whole-number slider (the
    document said "number"), "" or "a b" as webrtc_id (it said any string)."""
    doc = client.get("/rtc/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["ToneInputs"]["properties"]["frequency"]["type"] == "integer"  # step 10
    assert schemas["GainInputs"]["properties"]["level"]["type"] == "number"
    assert schemas["ToneInputs"]["properties"]["webrtc_id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    ticket = doc["paths"]["/rtc/{stream}/outputs/ticket"]["post"]["requestBody"]
    assert ticket["content"]["application/json"]["schema"]["properties"]["webrtc_id"]["pattern"]
    answer = doc["paths"]["/rtc/tone/input"]["post"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["required"] == ["status", "inputs"]
