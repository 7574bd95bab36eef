"""The sessions API: list, inspect and close sessions (staff by default).

GET  <prefix>/sessions/                 ?stream=&state=&live=1
GET  <prefix>/sessions/<id>/
POST <prefix>/sessions/<id>/close/
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils.module_loading import import_string
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from django_rtcstream.api.serializers import SessionSerializer
from django_rtcstream.api.views import AnswersDatabaseOutages, RefusesUnreadableBodies
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import BrokerUnavailable, UnknownSession
from django_rtcstream.models import ACTIVE_STATES, StreamSession
from django_rtcstream.sessions import bus
from django_rtcstream.signaling.http import retry_headers


def failure_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, answering the app's failure body (``{"status": "failed", "meta":
    {"error": code, "message": ...}}``) instead of DRF's ``{"detail": ...}``, which is
    kept beside it for DRF clients."""
    response = exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict) or "detail" not in response.data:
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    detail = response.data["detail"]
    response.data = {
        "status": "failed",
        "meta": {"error": code if isinstance(code, str) else "error", "message": str(detail)},
        "detail": detail,
    }
    return response


class SessionViewSet(
    AnswersDatabaseOutages,
    RefusesUnreadableBodies,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[StreamSession],
):
    serializer_class = SessionSerializer

    def get_exception_handler(self) -> Any:
        return failure_exception_handler

    def get_permissions(self) -> list[Any]:
        return [
            import_string(c)() if isinstance(c, str) else c()
            for c in rtc_settings.SESSIONS_API_PERMISSION_CLASSES
        ]

    def get_queryset(self) -> QuerySet[StreamSession]:
        qs = StreamSession.objects.all().order_by("-created_at")
        params = self.request.query_params
        if params.get("stream"):
            qs = qs.filter(stream=params["stream"])
        if params.get("state"):
            qs = qs.filter(state=params["state"])
        if params.get("webrtc_id"):
            qs = qs.filter(webrtc_id=params["webrtc_id"])
        if params.get("live") in ("1", "true"):
            qs = qs.filter(state__in=ACTIVE_STATES)
        return qs

    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        """Close a live session on whichever worker holds it."""
        record = self.get_object()
        try:
            async_to_sync(bus.send_close)(record.stream, record.webrtc_id, "closed_by_staff")
        except UnknownSession as exc:
            return Response(exc.body(), status=409)
        except BrokerUnavailable as exc:  # the session is on a worker we cannot reach now
            return Response(exc.body(), status=exc.status, headers=retry_headers(exc))
        return Response({"status": "success"})
