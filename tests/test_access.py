"""Who is asking: one ``Requester`` from an HTTP request, a WebSocket scope or a token,
and the same permission answers whichever built it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import RequestFactory
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from django_rtcstream.access import TOKEN_HEADER, PermissionRequest, Requester
from django_rtcstream.api import permissions
from django_rtcstream.api.permissions import hash_token
from django_rtcstream.exceptions import SignalingError, UnknownSession

TOKEN = "the-session-token"
JOE = User(pk=7, username="joe")
STAFF = User(pk=8, username="boss", is_staff=True)
OWNED_BY_JOE = SimpleNamespace(webrtc_id="s1", token_hash=hash_token(TOKEN), user_id=7)
NOBODYS = SimpleNamespace(webrtc_id="s2", token_hash=hash_token("another"), user_id=None)
STREAM = SimpleNamespace(name="echo", permission_classes=None)


def http_request(user=None, headers=None, path="/rtc/echo/input"):
    request = RequestFactory().post(path, headers=headers or {}, REMOTE_ADDR="10.0.0.5")
    if user is not None:
        request.user = user
    return request


def scope(user=None, headers=(), client=("10.0.0.5", 5555)):
    s = {"type": "websocket", "headers": list(headers), "client": list(client)}
    if user is not None:
        s["user"] = user
    return s


def answers(requester, record, stream=STREAM):
    """Allowed or refused, per action, with the app's default permission classes."""
    verdict = {}
    for action in permissions.ACTIONS:
        try:
            permissions.check(action, requester, stream, None if action == "open" else record)
            verdict[action] = True
        except SignalingError as exc:
            assert (exc.code, exc.status) == ("permission_denied", 403)
            verdict[action] = False
    return verdict


ALL = dict.fromkeys(permissions.ACTIONS, True)
OPEN_ONLY = {"open": True, "input": False, "outputs": False, "close": False}


def test_a_request_a_scope_and_a_token_give_the_same_answers_for_the_same_asker():
    """Anonymous with the token, three ways: the token is what counts, and it counts
    the same from a JSON body, a header, a scope and Gradio's token alone."""
    built = [
        Requester.from_request(http_request(AnonymousUser()), token=TOKEN),
        Requester.from_request(http_request(AnonymousUser(), {"X-Session-Token": TOKEN})),
        Requester.from_scope(scope(AnonymousUser()), token=TOKEN),
        Requester.from_token(TOKEN),
    ]
    for requester in built:
        assert requester.token == TOKEN
        assert not requester.user.is_authenticated
        assert answers(requester, OWNED_BY_JOE) == ALL, requester
        assert answers(requester, NOBODYS) == OPEN_ONLY, requester


def test_the_same_user_over_http_and_a_websocket_gets_the_same_answers():
    for user, owned, other in [(JOE, ALL, OPEN_ONLY), (STAFF, ALL, ALL)]:
        over_http = Requester.from_request(http_request(user))
        over_socket = Requester.from_scope(scope(user))
        assert over_http.user is over_socket.user is user
        assert over_http.address == over_socket.address == "10.0.0.5"
        for requester in (over_http, over_socket):
            assert answers(requester, OWNED_BY_JOE) == owned
            assert answers(requester, NOBODYS) == other


async def test_the_user_id_for_the_record_is_the_same_from_a_request_and_a_scope():
    request = http_request(JOE)

    async def auser():
        return JOE

    request.auser = auser
    assert await Requester.from_request(request).user_id() == 7
    assert await Requester.from_scope(scope(JOE)).user_id() == 7
    assert await Requester.from_scope(scope(AnonymousUser())).user_id() is None
    # Without AuthenticationMiddleware (no auser) a request has no user for the record.
    assert await Requester.from_request(http_request(JOE)).user_id() is None
    assert await Requester.from_token(TOKEN).user_id() is None


async def test_an_anonymous_scope_may_open_but_not_touch_a_session():
    for anonymous in [scope(), scope(AnonymousUser()), scope(client=())]:
        requester = Requester.from_scope(anonymous)
        assert requester.token is None and not requester.user.is_authenticated
        assert await requester.user_id() is None
        assert answers(requester, OWNED_BY_JOE) == OPEN_ONLY
    assert Requester.from_scope(scope(client=())).address is None


@pytest.mark.parametrize("token", [3.14, True, 7, ["x"], {"a": 1}, None, b"x", "", "forged"])
def test_a_bad_token_authorises_nothing_however_it_comes(token):
    built = [
        Requester.from_request(http_request(AnonymousUser()), token=token),
        Requester.from_scope(scope(AnonymousUser()), token=token),
        Requester.from_token(token),
    ]
    for requester in built:
        assert requester.token == (token if token == "forged" else None)
        assert answers(requester, OWNED_BY_JOE) == OPEN_ONLY


def test_the_header_token_comes_before_the_query_and_the_body():
    request = RequestFactory().post(
        "/rtc/echo/input?token=from-query", headers={"X-Session-Token": "from-header"}
    )
    assert Requester.from_request(request, token="from-body").token == "from-header"
    request = RequestFactory().get("/rtc/echo/outputs?token=from-query")
    assert Requester.from_request(request, token="from-body").token == "from-query"
    assert Requester.from_request(RequestFactory().post("/x"), "from-body").token == "from-body"


class Records(BasePermission):
    """A user's permission class: records what it is given."""

    seen: ClassVar[list[tuple[object, object]]] = []

    def has_permission(self, request, view):
        Records.seen.append((request, view))
        return True


def test_permission_classes_get_the_request_itself_or_one_stand_in():
    stream = SimpleNamespace(name="echo", permission_classes={"input": [Records]})
    django_request = http_request(JOE)
    drf_request = Request(http_request(JOE))
    for request in (django_request, drf_request):
        Records.seen.clear()
        requester = Requester.from_request(request, token=TOKEN)
        permissions.check("input", requester, stream, OWNED_BY_JOE)
        ((given, view),) = Records.seen
        assert given is request  # DRF's request in the input hook, Django's elsewhere
        assert view.requester is requester and view.requester.token == TOKEN
        assert (view.action, view.stream, view.webrtc_id) == ("input", stream, "s1")

    Records.seen.clear()
    socket = Requester.from_scope(scope(JOE, headers=[(b"x-forwarded-for", b"1.2.3.4")]))
    permissions.check("input", socket, stream, OWNED_BY_JOE)
    ((given, view),) = Records.seen
    assert isinstance(given, PermissionRequest) and given.requester is socket
    assert given.user is JOE and given.GET == {}
    assert given.META["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert given.META["REMOTE_ADDR"] == "10.0.0.5"

    Records.seen.clear()
    permissions.check("input", Requester.from_token(TOKEN), stream, OWNED_BY_JOE)
    ((given, view),) = Records.seen
    assert isinstance(given.user, AnonymousUser) and given.META == {TOKEN_HEADER: TOKEN}


def test_a_plain_request_is_still_taken_by_the_permission_check():
    """Code that passed a request before the Requester existed keeps working."""
    request = http_request(AnonymousUser(), {"X-Session-Token": TOKEN})
    permissions.check("input", request, STREAM, OWNED_BY_JOE)
    with pytest.raises(SignalingError):
        permissions.check("input", request, STREAM, NOBODYS)


def test_the_requester_reads_the_requests_user_when_asked_not_before():
    """The offer URL swaps the user for AnonymousUser when CSRF fails, after the
    requester may have been built: the check sees the swap."""
    request = http_request(JOE)
    requester = Requester.from_request(request)
    request.user = AnonymousUser()
    assert not requester.user.is_authenticated
    assert answers(requester, OWNED_BY_JOE) == OPEN_ONLY


@pytest.mark.django_db(transaction=True)
async def test_one_lookup_finds_a_session_or_refuses_with_unknown_connection():
    from django_rtcstream.models import StreamSession
    from django_rtcstream.sessions import records

    await StreamSession.objects.acreate(stream="echo", webrtc_id="ended", state="closed")
    live = await StreamSession.objects.acreate(stream="echo", webrtc_id="live", state="connected")
    assert (await records.find_or_refuse("echo", "live", live=True)).pk == live.pk
    assert (await records.find_or_refuse("echo", "ended", live=False)).state == "closed"
    for stream, webrtc_id, only_live in [
        ("echo", "ended", True),
        ("echo", "never", False),
        ("other", "live", False),
    ]:
        with pytest.raises(UnknownSession) as refused:
            await records.find_or_refuse(stream, webrtc_id, live=only_live)
        assert (refused.value.code, refused.value.status) == ("unknown_connection", 404)
