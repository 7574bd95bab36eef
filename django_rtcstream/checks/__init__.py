"""System checks: every configuration mistake is reported by ``manage.py check``."""

from __future__ import annotations

# One module per check function (apps.py registers the three); every name is
# importable from here, as before the split.
from django_rtcstream.checks.codes import RESERVED_NAMES as RESERVED_NAMES, Codes as Codes
from django_rtcstream.checks.configuration import check_settings as check_settings
from django_rtcstream.checks.deploy import (
    MIN_TURN_SECRET as MIN_TURN_SECRET,
    check_deploy as check_deploy,
)
from django_rtcstream.checks.streams import check_streams as check_streams

__all__ = [
    "MIN_TURN_SECRET",
    "RESERVED_NAMES",
    "Codes",
    "check_deploy",
    "check_settings",
    "check_streams",
]
