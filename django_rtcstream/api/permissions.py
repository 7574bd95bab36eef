"""Who may open a session and touch it afterwards: DRF permission classes.

Each action (``open``, ``input``, ``outputs``, ``close``) has a list of DRF
permission classes, from ``RTCSTREAM["PERMISSION_CLASSES"]`` or a stream's
own ``permission_classes``. They get the request (the Django or DRF request of
an HTTP call; from a WebSocket or Gradio, a stand-in with ``user``, ``META`` and
``GET``, see ``django_rtcstream.access``) and an ``AccessContext`` as the "view",
whose ``requester`` says who asks (user, token, address); for actions on an
existing session, ``has_object_permission`` gets its ``StreamSession`` row.

By default anyone may open a session on a stream; only the session's own
client (it holds the token returned with the answer), the same authenticated
user, or staff may then set inputs, read outputs or close it. Setting
``RTCSTREAM["OPEN_SESSIONS"] = True`` restores FastRTC's model, where the
``webrtc_id`` alone suffices.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.utils.module_loading import import_string
from rest_framework.permissions import AllowAny, BasePermission

from django_rtcstream.access import TOKEN_HEADER, Requester, request_token
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.tokens import (
    hash_token,
    new_token as new_token,  # its home is tokens
)

__all__ = [
    "ACTIONS",
    "TOKEN_HEADER",
    "AccessContext",
    "HoldsSessionToken",
    "IsSessionOwnerOrStaff",
    "IsSessionUser",
    "acheck",
    "check",
    "hash_token",
    "new_token",
    "permission_classes",
    "request_token",
]

ACTIONS = ("open", "input", "outputs", "close")


@dataclass
class AccessContext:
    """What a permission class sees as its ``view``."""

    action: str
    stream: Any
    webrtc_id: str | None = None
    requester: Requester | None = None


def _token(request: Any, view: Any) -> str | None:
    """The token of whoever asks: ``view.requester``'s, else the request's own."""
    requester = getattr(view, "requester", None)
    if isinstance(requester, Requester):
        return requester.token
    return request_token(request)


class HoldsSessionToken(BasePermission):
    """The request carries the token that was returned with this session's answer."""

    message = "This session belongs to another client: send its token as X-Session-Token."

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        token = _token(request, view)
        return bool(
            token is not None
            and obj.token_hash
            and hmac.compare_digest(hash_token(token), obj.token_hash)
        )


class IsSessionUser(BasePermission):
    """The request's authenticated user opened this session."""

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and obj.user_id == user.pk)


class IsSessionOwnerOrStaff(BasePermission):
    """The default for touching a session: its token, its user, or staff."""

    message = HoldsSessionToken.message

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            return True
        return HoldsSessionToken().has_object_permission(
            request, view, obj
        ) or IsSessionUser().has_object_permission(request, view, obj)


def permission_classes(action: str, stream: Any) -> list[type[BasePermission]]:
    own = (getattr(stream, "permission_classes", None) or {}).get(action)
    if own is not None:
        return [import_string(c) if isinstance(c, str) else c for c in own]
    configured = rtc_settings.PERMISSION_CLASSES.get(action)
    if configured is None:
        if action == "open" or rtc_settings.OPEN_SESSIONS:
            configured = ["rest_framework.permissions.AllowAny"]
        else:
            configured = ["django_rtcstream.api.permissions.IsSessionOwnerOrStaff"]
    return [import_string(c) if isinstance(c, str) else c for c in configured]


def check(action: str, requester: Requester | Any, stream: Any, record: Any = None) -> None:
    """Raise ``SignalingError(permission_denied, 403)`` unless every class allows.

    ``requester`` is a ``Requester``; an HTTP request is taken too (as
    ``Requester.from_request(request)``).
    """
    if not isinstance(requester, Requester):
        requester = Requester.from_request(requester)
    view = AccessContext(action, stream, getattr(record, "webrtc_id", None), requester)
    request = requester.permission_request()
    for cls in permission_classes(action, stream):
        permission = cls()
        # DRF's "view" argument is an AccessContext here (see the module docstring).
        allowed = permission.has_permission(request, view)  # type: ignore[arg-type]
        if allowed and record is not None:
            allowed = permission.has_object_permission(request, view, record)  # type: ignore[arg-type]
        if not allowed:
            message = getattr(permission, "message", None) or f"You may not {action} this session."
            raise SignalingError(ErrorCode.PERMISSION_DENIED, str(message))


async def acheck(action: str, requester: Requester | Any, stream: Any, record: Any = None) -> None:
    """``check`` from async code; when only ``AllowAny`` applies, without a thread hop."""
    classes = permission_classes(action, stream)
    if all(cls is AllowAny for cls in classes):
        return
    await sync_to_async(check)(action, requester, stream, record)
