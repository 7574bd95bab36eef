"""Who may open a session and touch it afterwards: DRF permission classes.

Each action (``open``, ``input``, ``outputs``, ``close``) has a list of DRF
permission classes, from ``RTCSTREAM["PERMISSION_CLASSES"]`` or a stream's
own ``permission_classes``. They get the Django request and an
``AccessContext`` as the "view"; for actions on an existing session,
``has_object_permission`` gets its ``StreamSession`` row.

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

from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.tokens import hash_token
from django_rtcstream.tokens import new_token as new_token  # its home is tokens

ACTIONS = ("open", "input", "outputs", "close")
TOKEN_HEADER = "HTTP_X_SESSION_TOKEN"


def request_token(request: Any) -> str | None:
    """The session token a request carries: ``X-Session-Token`` header, ``?token=``
    (EventSource cannot set headers), or the ``token`` of a JSON body (``rtc_token``).

    A token is a string. Anything else a client sends in its place (``3.14``,
    ``true``, a list) is no token at all: the request is then refused like one
    without a token (403), not hashed into a 500.
    """
    candidates = [getattr(request, "META", {}).get(TOKEN_HEADER)]
    if hasattr(request, "GET"):
        candidates.append(request.GET.get("token"))
    candidates.append(getattr(request, "rtc_token", None))
    return next((t for t in candidates if isinstance(t, str) and t), None)


@dataclass
class AccessContext:
    """What a permission class sees as its ``view``."""

    action: str
    stream: Any
    webrtc_id: str | None = None


class HoldsSessionToken(BasePermission):
    """The request carries the token that was returned with this session's answer."""

    message = "This session belongs to another client: send its token as X-Session-Token."

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        token = request_token(request)
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


def check(action: str, request: Any, stream: Any, record: Any = None) -> None:
    """Raise ``SignalingError(permission_denied, 403)`` unless every class allows."""
    view = AccessContext(action, stream, getattr(record, "webrtc_id", None))
    for cls in permission_classes(action, stream):
        permission = cls()
        allowed = permission.has_permission(request, view)
        if allowed and record is not None:
            allowed = permission.has_object_permission(request, view, record)
        if not allowed:
            message = getattr(permission, "message", None) or f"You may not {action} this session."
            raise SignalingError("permission_denied", str(message), status=403)


async def acheck(action: str, request: Any, stream: Any, record: Any = None) -> None:
    """``check`` from async code; when only ``AllowAny`` applies, without a thread hop."""
    classes = permission_classes(action, stream)
    if all(cls is AllowAny for cls in classes):
        return
    await sync_to_async(check)(action, request, stream, record)
