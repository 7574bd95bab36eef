"""Who is asking: one value for the permission checks of every transport.

A session is opened or touched over HTTP (offers, hooks, tickets), over a
WebSocket (signaling, audio, phone) or from Gradio's event handlers, which have
only the token the browser holds. Each builds a ``Requester`` (``from_request``,
``from_scope``, ``from_token``); ``api.permissions.check`` takes it, hands the
stream's DRF permission classes a request (``permission_request()``, built here
and nowhere else) and the requester itself as ``view.requester``.

Permission classes keep receiving what they always did: the HTTP request itself
(Django's, or DRF's in the input hook) when there is one, otherwise a stand-in with
``user``, ``META`` and ``GET``. The token is read from the requester, not from the
request, so a token from a JSON body no longer has to be pinned onto the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The ``META`` key of the ``X-Session-Token`` header.
TOKEN_HEADER = "HTTP_X_SESSION_TOKEN"


def as_token(value: Any) -> str | None:
    """A token is a non-empty string. Anything else a client sends in its place
    (``3.14``, ``true``, a list) is no token at all: refused like a missing one (403),
    never hashed into a 500."""
    return value if isinstance(value, str) and value else None


def request_token(request: Any, body_token: Any = None) -> str | None:
    """The session token an HTTP request carries: the ``X-Session-Token`` header,
    ``?token=`` (EventSource cannot set headers), or ``body_token`` (the ``token`` of
    its JSON body), in that order."""
    candidates = [getattr(request, "META", {}).get(TOKEN_HEADER)]
    query = getattr(request, "GET", None)
    if query is not None:
        candidates.append(query.get("token"))
    candidates.append(body_token)
    return next((t for t in map(as_token, candidates) if t is not None), None)


def scope_meta(scope: Mapping[str, Any]) -> dict[str, Any]:
    """A WebSocket scope's headers as ``META`` keys (``HTTP_<NAME>``), and ``REMOTE_ADDR``."""
    meta: dict[str, Any] = {
        "HTTP_" + k.decode("latin1").upper().replace("-", "_"): v.decode("latin1")
        for k, v in scope.get("headers", [])
    }
    meta["REMOTE_ADDR"] = scope_address(scope)
    return meta


def scope_address(scope: Mapping[str, Any]) -> str | None:
    """The client's address of an ASGI scope (None when the server does not say)."""
    client = scope.get("client") or [None]
    address = client[0]
    return address if isinstance(address, str) else None


@dataclass(frozen=True)
class Requester:
    """Who asks to open or touch a session: user, token, address, headers.

    ``request`` is the HTTP request it was read from, if any: its user is read from it
    when asked (never before: an async view must not load a lazy user on the event
    loop, and the offer URL swaps the user out when CSRF fails). ``socket_user`` is the
    user of a WebSocket scope; None is anonymous.
    """

    token: str | None = None
    address: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)
    request: Any = field(default=None, repr=False, compare=False)
    socket_user: Any = field(default=None, repr=False)

    @classmethod
    def from_request(cls, request: Any, token: Any = None) -> Requester:
        """From an HTTP request (Django's or DRF's); ``token`` is the one its JSON body
        carries, if any (the header and ``?token=`` come first)."""
        meta = getattr(request, "META", {})
        return cls(
            token=request_token(request, token),
            address=meta.get("REMOTE_ADDR"),
            meta=meta,
            request=request,
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], token: Any = None) -> Requester:
        """From a WebSocket's ASGI scope: its user (Channels' ``AuthMiddleware``), headers
        and client address; the sockets' protocols carry no token."""
        return cls(
            token=as_token(token),
            address=scope_address(scope),
            meta=scope_meta(scope),
            socket_user=scope.get("user"),
        )

    @classmethod
    def from_token(cls, token: Any) -> Requester:
        """Only a token (a Gradio event handler knows no more of the browser): an
        anonymous user; the token is also in ``META`` as ``X-Session-Token``."""
        token = as_token(token)
        return cls(token=token, meta={TOKEN_HEADER: token or ""})

    @property
    def user(self) -> Any:
        """The user (``AnonymousUser`` when there is none)."""
        user = getattr(self.request, "user", None) if self.request is not None else self.socket_user
        if user is None:
            from django.contrib.auth.models import AnonymousUser

            return AnonymousUser()
        return user

    async def user_id(self) -> Any:
        """The primary key of an authenticated user, for the session's record, else None.

        From a request: through ``request.auser()`` (Django's ``AuthenticationMiddleware``
        or the direct offer path); without it, no user.
        """
        if self.request is not None:
            auser = getattr(self.request, "auser", None)
            if auser is None:
                return None
            user = await auser()
        else:
            user = self.socket_user
        return user.pk if user is not None and user.is_authenticated else None

    def permission_request(self) -> Any:
        """What permission classes get as their ``request``: the HTTP request itself, or,
        from a socket or a token, a stand-in with ``user``, ``META``, ``GET`` (empty) and
        ``requester``."""
        if self.request is not None:
            return self.request
        return PermissionRequest(user=self.user, META=dict(self.meta), requester=self)


@dataclass
class PermissionRequest:
    """The request that permission classes see when there is no HTTP request."""

    user: Any
    META: dict[str, Any]
    requester: Requester
    GET: dict[str, str] = field(default_factory=dict)
